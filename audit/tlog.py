"""The Merkle tree's stored hashes and proofs, as golang.org/x/mod/sumdb/tlog lays them out.

Every complete subtree's hash is stored once, at `stored_hash_index(level, n)`: the hash of the
n-th subtree of 2**level leaves. Appending leaf n stores its leaf hash and the hashes of the
subtrees it completes, at consecutive indices (`TreeBuilder.append` in verify_export.py gives
them in that order), so the table only ever grows at its end. A tree head, an inclusion proof
or a consistency proof then reads O(log n) stored hashes. Hashing is RFC 9162's; checking
lives in `audit/verify_export.py` (stdlib only), which an auditor runs without Patterm.
No Django here: `read(indices) -> hashes` is given by the caller.
"""

from collections.abc import Callable, Sequence

from audit.verify_export import EMPTY_ROOT, node_hash

Reader = Callable[[Sequence[int]], list[bytes]]


def stored_hash_index(level: int, n: int) -> int:
    """Where the hash of subtree n of level `level` is stored (tlog.StoredHashIndex)."""
    for _ in range(level):
        n = 2 * n + 1
    index = 0
    while n > 0:
        index += n
        n >>= 1
    return index + level


def split_stored_hash_index(index: int) -> tuple[int, int]:
    """(level, n) stored at `index` (tlog.SplitStoredHashIndex)."""
    n = index // 2
    index_n = stored_hash_index(0, n)
    while True:
        following = index_n + 1 + _trailing_ones(n)
        if following > index:
            break
        n, index_n = n + 1, following
    level = index - index_n
    return level, n >> level


def stored_hash_count(size: int) -> int:
    """How many hashes a tree of `size` leaves stores (tlog.StoredHashCount)."""
    if size == 0:
        return 0
    return stored_hash_index(0, size - 1) + 1 + _trailing_ones(size - 1)


def leaf_range(index: int) -> tuple[int, int]:
    """The leaves [first, last] under the stored hash at `index`."""
    level, n = split_stored_hash_index(index)
    return n << level, ((n + 1) << level) - 1


def _trailing_ones(n: int) -> int:
    return ((n ^ (n + 1)).bit_length()) - 1


def _split(size: int) -> tuple[int, int]:
    """(k, log2 k): k the largest power of two smaller than `size` (tlog's maxpow2)."""
    level = (size - 1).bit_length() - 1
    return 1 << level, level


def edge_indices(size: int) -> list[int]:
    """The stored hashes of the complete subtrees on the right edge of a tree of `size`
    leaves, left to right: what appending the next leaf combines with."""
    return _subtree_indices(0, size, [])


def _subtree_indices(lo: int, hi: int, need: list[int]) -> list[int]:
    while lo < hi:
        k, level = _split(hi - lo + 1)
        need.append(stored_hash_index(level, lo >> level))
        lo += k
    return need


def _subtree_hash(lo: int, hi: int, hashes: list[bytes]) -> tuple[bytes, list[bytes]]:
    count = 0
    while lo < hi:
        k, _ = _split(hi - lo + 1)
        lo += k
        count += 1
    hashed = hashes[count - 1]
    for index in range(count - 2, -1, -1):
        hashed = node_hash(hashes[index], hashed)
    return hashed, hashes[count:]


def tree_hash(size: int, read: Reader) -> bytes:
    """The root hash of the tree's first `size` leaves."""
    if size == 0:
        return EMPTY_ROOT
    hashed, _ = _subtree_hash(0, size, read(_subtree_indices(0, size, [])))
    return hashed


def _leaf_proof_indices(lo: int, hi: int, n: int, need: list[int]) -> list[int]:
    if lo + 1 == hi:
        return need
    k, _ = _split(hi - lo)
    if n < lo + k:
        _leaf_proof_indices(lo, lo + k, n, need)
        _subtree_indices(lo + k, hi, need)
    else:
        _subtree_indices(lo, lo + k, need)
        _leaf_proof_indices(lo + k, hi, n, need)
    return need


def _leaf_proof(lo: int, hi: int, n: int, hashes: list[bytes]) -> tuple[list[bytes], list]:
    if lo + 1 == hi:
        return [], hashes
    k, _ = _split(hi - lo)
    if n < lo + k:
        proof, hashes = _leaf_proof(lo, lo + k, n, hashes)
        sibling, hashes = _subtree_hash(lo + k, hi, hashes)
    else:
        sibling, hashes = _subtree_hash(lo, lo + k, hashes)
        proof, hashes = _leaf_proof(lo + k, hi, n, hashes)
    return [*proof, sibling], hashes


def inclusion_proof(index: int, size: int, read: Reader) -> list[bytes]:
    """The audit path of leaf `index` in the tree of `size` leaves, leaf to root
    (tlog.ProveRecord; RFC 9162 section 2.1.3)."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size} leaves")
    indices = _leaf_proof_indices(0, size, index, [])
    if not indices:
        return []
    proof, _ = _leaf_proof(0, size, index, read(indices))
    return proof


def _tree_proof_indices(lo: int, hi: int, n: int, need: list[int]) -> list[int]:
    if n == hi:
        return need if lo == 0 else _subtree_indices(lo, hi, need)
    k, _ = _split(hi - lo)
    if n <= lo + k:
        _tree_proof_indices(lo, lo + k, n, need)
        _subtree_indices(lo + k, hi, need)
    else:
        _subtree_indices(lo, lo + k, need)
        _tree_proof_indices(lo + k, hi, n, need)
    return need


def _tree_proof(lo: int, hi: int, n: int, hashes: list[bytes]) -> tuple[list[bytes], list]:
    if n == hi:
        if lo == 0:
            return [], hashes
        hashed, hashes = _subtree_hash(lo, hi, hashes)
        return [hashed], hashes
    k, _ = _split(hi - lo)
    if n <= lo + k:
        proof, hashes = _tree_proof(lo, lo + k, n, hashes)
        sibling, hashes = _subtree_hash(lo + k, hi, hashes)
    else:
        sibling, hashes = _subtree_hash(lo, lo + k, hashes)
        proof, hashes = _tree_proof(lo + k, hi, n, hashes)
    return [*proof, sibling], hashes


def consistency_proof(old_size: int, new_size: int, read: Reader) -> list[bytes]:
    """The proof that the tree of `old_size` leaves is a prefix of the one of `new_size`
    (tlog.ProveTree; RFC 9162 section 2.1.4)."""
    if not 1 <= old_size <= new_size:
        raise ValueError(f"no consistency proof from {old_size} to {new_size}")
    indices = _tree_proof_indices(0, new_size, old_size, [])
    if not indices:
        return []
    proof, _ = _tree_proof(0, new_size, old_size, read(indices))
    return proof
