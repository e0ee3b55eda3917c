"""Private helpers for the CRMnet layers."""
import keras


def clone_initializer(initializer):
    """A fresh copy, so sublayers never share one (seeded) initializer object."""
    if not isinstance(initializer, keras.initializers.Initializer):
        return initializer
    return initializer.__class__.from_config(initializer.get_config())


def relu_conv(block, suffix, strides=1):
    """The SE-block convolution every CRMnet block uses: same padding, ReLU, the block's initializer."""
    return keras.layers.Conv1D(
        block.filters,
        block.kernel_size,
        strides=strides,
        padding="same",
        activation="relu",
        kernel_initializer=clone_initializer(block.kernel_initializer),
        dtype=block.dtype_policy,
        name=f"{block.name}_{suffix}",
    )


def batch_norm(block, suffix):
    return keras.layers.BatchNormalization(
        momentum=block.batch_norm_momentum,
        epsilon=block.batch_norm_epsilon,
        dtype=block.dtype_policy,
        name=f"{block.name}_{suffix}",
    )
