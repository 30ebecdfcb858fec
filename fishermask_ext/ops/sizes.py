"""Working-set sizes shared by the selection code, its twins and the native ops (which take them
as arguments, so the rule lives here only)."""

# Bytes of one chunk of candidates' float64 working copy during initialisation, finiteness
# checks and the twin's products (float32 embeddings are converted chunk by chunk, never whole).
CHUNK_BYTES = 64 << 20
# Column block of the triangular float64 products (pool Fisher, initial A and B): the largest
# that keeps the GEMMs efficient (measured on a 2-core Zen 4).
BLOCK = 384


def chunk_rows(C, D):
    """Rows of an [N, C, D] embedding per chunk of about CHUNK_BYTES of float64."""
    return max(1, CHUNK_BYTES // max(1, 8 * C * D))


def factored_rows(C, d_bar, d_rest):
    """Rows of factored embeddings per chunk of about CHUNK_BYTES: per row the float64 working
    set of one step, the converted factors (C² + d̄ + C·D_r) and the [C, 2C] products."""
    return max(1, CHUNK_BYTES // (8 * (3 * C * C + d_bar + C * d_rest)))


def factored_init_rows(C, d_bar, d_rest):
    """Rows per chunk of factored_init: its largest temporary is h̄ᵀ·M_kk' for the C(C+1)/2
    class pairs, C(C+1)/2·d̄ values per row (factored_rows bounds the rest)."""
    return min(factored_rows(C, d_bar, d_rest),
               max(1, CHUNK_BYTES // (8 * (C * (C + 1) // 2) * max(1, d_bar))))


# Bytes of the per-sample gradients (and a conv's input patches) that one chunk of step A holds
# at once: the whole working set of the fisher_*_sq ops, whatever the batch size. Large enough
# that a chunk's batched GEMM runs at full rate, small enough to stay in the last-level cache.
FISHER_CHUNK_BYTES = 16 << 20


def fisher_chunk(per_sample, itemsize):
    """Samples per chunk of a fisher_*_sq op when one sample's gradients (and patches) are
    `per_sample` elements of `itemsize` bytes."""
    return max(1, FISHER_CHUNK_BYTES // max(1, per_sample * itemsize))


# Bytes of the output gradients of all seeds (hooks.fisher_seeds: C − 1 for C = 10) that
# step A holds for one pass of `rows` samples: a sample's seeds then meet in one product per
# layer, which reads the sample's input patches once for all of them. 256 MB is about 20 images of the narrow
# ResNet-18 (12 MB each in float32); on the 2-core CPU, passes of 8 images were slower than
# passes of 16 or 32 (small-batch backward passes), in one timing on a shared machine.
FISHER_ROWS_BYTES = 256 << 20


def fisher_rows(per_sample_bytes):
    """Samples per forward/backward pass of step A when one sample's output gradients of all
    seeds take `per_sample_bytes`."""
    return max(1, FISHER_ROWS_BYTES // max(1, per_sample_bytes))
