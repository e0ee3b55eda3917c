"""LegNet's EfficientNet-style inverted residual block (expand, grouped conv, SE, project)."""
import keras
from keras import ops

from legnet_tf.layers import _initializers as _init
from legnet_tf.layers.grouped_conv import GroupedConv1D
from legnet_tf.layers.se_block import SEBlock


@keras.saving.register_keras_serializable(package="legnet_tf")
class InvertedResidual(keras.layers.Layer):
    """``1x1 expand -> grouped conv -> SE -> 1x1 project``, each conv with BatchNorm + SiLU.

    Widening to ``expanded_channels`` gives the grouped conv many cheap
    positional filters (``filters_per_group`` input channels each); the 1x1
    projection returns to the input width. The block returns only its branch:
    the model concatenates ``[input, branch]`` (input channels first, as the
    reference's ``cat([x, block(x)])``), which is what the next ResizeBlock's
    kernel expects channel by channel.

    Args:
        expanded_channels: width inside the block (reference: 4 x the next block size).
        kernel_size: grouped-conv length ("same" padding).
        filters_per_group: input channels per group (reference: 2), so
            ``groups = expanded_channels // filters_per_group``.
        squeeze_units: SE bottleneck width (reference: input channels // 4).
        bilinear_rank: CP rank of the SE's bilinear branch ("auto" = reference rule).
        batch_norm_momentum: Keras convention (0.9 = PyTorch's 0.1).
        batch_norm_epsilon: reference 1e-5.
    """

    def __init__(self, expanded_channels, kernel_size=7, filters_per_group=2, squeeze_units=16,
                 bilinear_rank="auto", batch_norm_momentum=0.9, batch_norm_epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.expanded_channels = int(expanded_channels)
        self.kernel_size = int(kernel_size)
        self.filters_per_group = int(filters_per_group)
        if self.filters_per_group < 1 or self.expanded_channels % self.filters_per_group:
            raise ValueError(f"expanded_channels {expanded_channels} must be a multiple of "
                             f"filters_per_group {filters_per_group}")
        self.squeeze_units = int(squeeze_units)
        self.bilinear_rank = bilinear_rank
        self.batch_norm_momentum = float(batch_norm_momentum)
        self.batch_norm_epsilon = float(batch_norm_epsilon)
        self.expand_conv = self._conv(self.expanded_channels, 1, "expand_conv")
        self.expand_bn = self._batch_norm("expand_bn")
        self.group_conv = GroupedConv1D(self.expanded_channels, self.kernel_size,
                                        groups=self.expanded_channels // self.filters_per_group,
                                        kernel_initializer=_init.conv_kernel(), dtype=self.dtype_policy,
                                        name="group_conv")
        self.group_bn = self._batch_norm("group_bn")
        self.se = SEBlock(self.squeeze_units, bilinear_rank=bilinear_rank, dtype=self.dtype_policy, name="se")
        self.project_conv = self.project_bn = None  # need the input width: created in build

    def _conv(self, filters, kernel, name):
        return keras.layers.Conv1D(filters, kernel, padding="same", use_bias=False,
                                   kernel_initializer=_init.conv_kernel(), dtype=self.dtype_policy, name=name)

    def _batch_norm(self, name):
        return keras.layers.BatchNormalization(momentum=self.batch_norm_momentum, epsilon=self.batch_norm_epsilon,
                                               dtype=self.dtype_policy, name=name)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError("InvertedResidual needs a known channel dimension.")
        wide = tuple(input_shape[:-1]) + (self.expanded_channels,)
        self.expand_conv.build(input_shape)
        self.expand_bn.build(wide)
        self.group_conv.build(wide)
        self.group_bn.build(wide)
        self.se.build(wide)
        self.project_conv = self._conv(channels, 1, "project_conv")
        self.project_conv.build(wide)
        self.project_bn = self._batch_norm("project_bn")
        self.project_bn.build(tuple(input_shape))

    def call(self, inputs, training=None):
        x = ops.silu(self.expand_bn(self.expand_conv(inputs), training=training))
        x = ops.silu(self.group_bn(self.group_conv(x), training=training))
        x = self.se(x)
        return ops.silu(self.project_bn(self.project_conv(x), training=training))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({
            "expanded_channels": self.expanded_channels,
            "kernel_size": self.kernel_size,
            "filters_per_group": self.filters_per_group,
            "squeeze_units": self.squeeze_units,
            "bilinear_rank": self.bilinear_rank,
            "batch_norm_momentum": self.batch_norm_momentum,
            "batch_norm_epsilon": self.batch_norm_epsilon,
        })
        return config
