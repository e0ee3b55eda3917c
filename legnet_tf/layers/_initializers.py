"""The reference model's initialisers, as fresh Keras objects (never shared between weights)."""
import keras


def conv_kernel():
    """``N(0, sqrt(2 / (k * out_channels)))``: He init on fan-out, as the reference convs."""
    return keras.initializers.VarianceScaling(2.0, mode="fan_out", distribution="untruncated_normal")


def dense_kernel():
    """``N(0, 0.001)``: the reference Linear layers start almost silent (SE gate ~ 0.5 everywhere)."""
    return keras.initializers.RandomNormal(stddev=0.001)
