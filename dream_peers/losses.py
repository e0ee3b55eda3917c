"""The DREAM peers' training losses, as ``ModelSpec.compute_loss(model, batch, inputs, outputs)``.

Both regress STANDARDISED expression: the model ends in ``LabelScale`` (expression units
out), so the squared error on the standardised scale is ``((y - pred) / std) ** 2``, which
has exactly the gradient of MSE between standardised targets and the pre-scale output.
Each returns a ``(batch,)`` per-example loss; the engine sums it and divides by the global
batch size.
"""
from keras import ops

from dream_peers.transforms import MASK_TOKEN, exact_length_weight, macaron_tokens


def _scale(model):
    try:
        return model.get_layer("label_scale")
    except ValueError:
        raise ValueError(f"model {model.name!r} has no 'label_scale' layer: build it with label_scale=True "
                         "(the model registry does) to train on standardised targets") from None


def standardized_squared_error(model, batch, outputs):
    """``((y - pred) / std) ** 2`` per example, ``pred`` in expression units."""
    scale = _scale(model)
    pred = ops.reshape(ops.cast(outputs, "float32"), (-1,))
    return ops.square(scale.standardize(ops.reshape(batch["label"], (-1,))) - scale.standardize(pred))


def cnn_bilstm_loss(model, batch, inputs, outputs):
    """MSE on standardised targets; sequences that are not exactly 110 nt weigh 0 (the reference drops them)."""
    return standardized_squared_error(model, batch, outputs) * exact_length_weight(batch["seq"])


def masked_token_cross_entropy(true_tokens, masked_inputs, logits):
    """(per-example sum of the cross-entropy over masked positions, masked count of the batch)."""
    masked = ops.cast(ops.equal(ops.cast(masked_inputs, "int32"), MASK_TOKEN), "float32")
    ce = ops.sparse_categorical_crossentropy(ops.cast(true_tokens, "int32"), ops.cast(logits, "float32"),
                                             from_logits=True)
    return ops.sum(ce * masked, axis=1), ops.sum(masked)


def macaron_loss(model, batch, inputs, outputs):
    """Standardised MSE + masked-token cross-entropy summed over masked positions / (masked count + 1).

    The reconstruction term is normalised by the count of the batch this replica sees;
    written per example as ``ce_i * b / (count + 1)`` so that the engine's sum / global
    batch gives the published term (exact with one replica; with R replicas the mean of
    the R per-replica terms).
    """
    mse = standardized_squared_error(model, batch, outputs["expression"])
    per_example, count = masked_token_cross_entropy(macaron_tokens(batch["seq"]), inputs, outputs["nucleotides"])
    b = ops.cast(ops.shape(mse)[0], "float32")
    return mse + per_example * b / (count + 1.0)
