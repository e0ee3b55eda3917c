"""Bilinear map x -> y with a CP-factorised (rank-R) weight tensor."""
import math

import keras
from keras import ops


def cp_rank(in_features, out_features, ratio=0.5):
    """Rank whose CP factors hold ``ratio`` times the parameters of the full tensor.

    The full weight has ``m * m * out`` entries and a rank-R CP form
    ``R * (m + m + out)`` (plus R scales), so ``R = round(ratio * m*m*out / (2m + out))``:
    m=64/out=32 -> 410, 32/16 -> 102, 16/8 -> 26, as in the reference model.
    """
    m, o = int(in_features), int(out_features)
    return max(1, int(round(m * m * o * float(ratio) / (m + m + o))))


@keras.saving.register_keras_serializable(package="legnet_tf")
class CPBilinear(keras.layers.Layer):
    """``y_o = bias_o + sum_r lam_r (x . A_r)(x . B_r) C_{o,r}``: a quadratic form per output.

    LegNet's SE block adds these pairwise channel interactions to its gate. The
    weight ``W[i, j, o] = sum_r lam_r A[i,r] B[j,r] C[o,r]`` is never built:
    contracting ``x`` with each factor first costs O(R (2m + out)) per example
    instead of O(m*m*out), and needs no m x m x out buffer on the accelerator.

    Variables map 1:1 onto the reference (tltorch TRL) state_dict:
    ``weights`` (R,) = lam, ``factor_0`` (m, R) = A, ``factor_1`` (m, R) = B,
    ``factor_2`` (out, R) = C, ``bias`` (out,).

    Args:
        out_features: size of ``y``.
        rank: CP rank R, or ``"auto"`` for ``cp_rank(m, out_features, rank_ratio)``.
        rank_ratio: parameter fraction used by ``rank="auto"`` (reference: 0.5).
        use_bias: add ``bias``.
        factor_initializer: initializer of A, B and C; ``None`` gives the
            reference ``N(0, std)`` with ``std = (0.00075 / sqrt(R)) ** (1/3)``,
            so the product of the three factors has std ~0.00075 / sqrt(R).
        bias_initializer: ``None`` gives the reference ``U(-1, 1)``.
    """

    def __init__(self, out_features, rank="auto", rank_ratio=0.5, use_bias=True,
                 factor_initializer=None, bias_initializer=None, **kwargs):
        super().__init__(**kwargs)
        if int(out_features) < 1:
            raise ValueError(f"`out_features` must be >= 1; got {out_features}")
        if rank != "auto" and (isinstance(rank, bool) or int(rank) < 1):
            raise ValueError(f"`rank` must be 'auto' or a positive int; got {rank!r}")
        self.out_features = int(out_features)
        self.rank = rank if rank == "auto" else int(rank)
        self.rank_ratio = float(rank_ratio)
        self.use_bias = bool(use_bias)
        self.factor_initializer = (
            None if factor_initializer is None else keras.initializers.get(factor_initializer))
        self.bias_initializer = (
            None if bias_initializer is None else keras.initializers.get(bias_initializer))

    def resolved_rank(self, in_features):
        if self.rank == "auto":
            return cp_rank(in_features, self.out_features, self.rank_ratio)
        return self.rank

    def build(self, input_shape):
        m = input_shape[-1]
        if m is None:
            raise ValueError("CPBilinear needs a known feature dimension.")
        r = self.resolved_rank(m)
        self.in_features, self.effective_rank = int(m), r

        def factor_init():
            if self.factor_initializer is not None:
                return keras.initializers.get(keras.initializers.serialize(self.factor_initializer))
            return keras.initializers.RandomNormal(stddev=(0.00075 / math.sqrt(r)) ** (1.0 / 3.0))

        self.cp_weights = self.add_weight(shape=(r,), initializer="ones", name="weights")
        self.factor_0 = self.add_weight(shape=(m, r), initializer=factor_init(), name="factor_0")
        self.factor_1 = self.add_weight(shape=(m, r), initializer=factor_init(), name="factor_1")
        self.factor_2 = self.add_weight(shape=(self.out_features, r), initializer=factor_init(),
                                        name="factor_2")
        if self.use_bias:
            bias_init = self.bias_initializer or keras.initializers.RandomUniform(-1.0, 1.0)
            self.bias = self.add_weight(shape=(self.out_features,), initializer=bias_init, name="bias")
        else:
            self.bias = None

    def call(self, inputs):
        left = ops.matmul(inputs, self.factor_0)  # (..., R)
        right = ops.matmul(inputs, self.factor_1)
        y = ops.matmul(left * right * self.cp_weights, ops.transpose(self.factor_2))
        if self.bias is not None:
            y = y + self.bias
        return y

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.out_features,)

    def get_config(self):
        config = super().get_config()
        config.update({
            "out_features": self.out_features,
            "rank": self.rank,
            "rank_ratio": self.rank_ratio,
            "use_bias": self.use_bias,
            "factor_initializer": (None if self.factor_initializer is None
                                   else keras.initializers.serialize(self.factor_initializer)),
            "bias_initializer": (None if self.bias_initializer is None
                                 else keras.initializers.serialize(self.bias_initializer)),
        })
        return config
