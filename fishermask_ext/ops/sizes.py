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
