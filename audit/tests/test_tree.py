"""The Merkle tree and signed notes against known answers: the RFC 6962/9162 test vectors of
certificate transparency (the ones Go's sumdb/tlog reproduces) and the signed note of Go's
sumdb/note tests; then every proof shape of small trees, both ways. No database."""

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import tlog
from audit.verify_export import (
    EMPTY_ROOT,
    Broken,
    TreeBuilder,
    checkpoint_parse,
    consistency_roots,
    inclusion_root,
    key_hash,
    leaf_hash,
    note_open,
    verifier_parse,
)

# RFC 6962 section 2.1 test leaves, and the roots of their first n (certificate-transparency's
# merkle tree tests; `go run` over sumdb/tlog gives the same).
LEAVES = [
    bytes.fromhex(value)
    for value in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
ROOTS = {
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}
INCLUSION_0_IN_8 = [
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
]
CONSISTENCY = {
    (6, 8): [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
    (2, 5): [
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ],
}


def stored_tree(leaves: list[bytes]) -> tuple[list[bytes], TreeBuilder]:
    builder, stored = TreeBuilder(), []
    for leaf in leaves:
        stored += builder.append(leaf)
    return stored, builder


def reader(stored: list[bytes]):
    return lambda indices: [stored[index] for index in indices]


def test_the_empty_tree_has_the_hash_of_nothing():
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert TreeBuilder().root() == EMPTY_ROOT


@pytest.mark.parametrize("size", sorted(ROOTS))
def test_roots_are_those_of_rfc_6962(size):
    stored, builder = stored_tree(LEAVES[:size])
    assert builder.root().hex() == ROOTS[size]
    assert tlog.tree_hash(size, reader(stored)).hex() == ROOTS[size]
    assert len(stored) == tlog.stored_hash_count(size)


def test_the_inclusion_proof_of_leaf_0_is_that_of_rfc_6962():
    stored, _ = stored_tree(LEAVES)
    proof = tlog.inclusion_proof(0, 8, reader(stored))
    assert [hashed.hex() for hashed in proof] == INCLUSION_0_IN_8


@pytest.mark.parametrize(("old", "new"), sorted(CONSISTENCY))
def test_consistency_proofs_are_those_of_rfc_6962(old, new):
    stored, _ = stored_tree(LEAVES)
    proof = tlog.consistency_proof(old, new, reader(stored))
    assert [hashed.hex() for hashed in proof] == CONSISTENCY[(old, new)]


def test_every_proof_of_small_trees_checks_and_a_changed_one_does_not():
    leaves = [f"leaf {n}".encode() for n in range(40)]
    stored, _ = stored_tree(leaves)
    read = reader(stored)
    roots = {size: tlog.tree_hash(size, read) for size in range(1, 41)}
    for size in range(1, 41):
        for index in range(size):
            proof = tlog.inclusion_proof(index, size, read)
            assert inclusion_root(proof, index, size, leaf_hash(leaves[index])) == roots[size]
            assert inclusion_root(proof, index, size, leaf_hash(b"forged")) != roots[size]
        for old in range(1, size + 1):
            proof = tlog.consistency_proof(old, size, read)
            assert consistency_roots(proof, old, size, roots[old]) == (roots[old], roots[size])
            if proof:
                forged = [bytes(32), *proof[1:]]
                assert consistency_roots(forged, old, size, roots[old]) != (
                    roots[old],
                    roots[size],
                )


def test_proofs_of_the_wrong_length_are_refused_not_crashed_on():
    stored, _ = stored_tree(LEAVES)
    proof = tlog.inclusion_proof(3, 8, reader(stored))
    with pytest.raises(Broken):
        inclusion_root([*proof, bytes(32)], 3, 8, leaf_hash(LEAVES[3]))
    with pytest.raises(Broken):
        inclusion_root(proof[:-1], 3, 8, leaf_hash(LEAVES[3]))
    with pytest.raises(Broken):
        inclusion_root(proof, 8, 8, leaf_hash(LEAVES[3]))
    with pytest.raises(Broken):
        consistency_roots([], 3, 8, bytes(32))


def test_stored_hash_indices_are_those_of_sumdb_tlog():
    # tlog_test.go's TestSplitStoredHashIndex and the layout of its doc comment.
    assert [tlog.stored_hash_index(0, n) for n in range(8)] == [0, 1, 3, 4, 7, 8, 10, 11]
    assert [tlog.stored_hash_index(1, n) for n in range(4)] == [2, 5, 9, 12]
    assert tlog.stored_hash_index(2, 0) == 6
    for index in range(2000):
        level, n = tlog.split_stored_hash_index(index)
        assert tlog.stored_hash_index(level, n) == index


# --- Signed notes -------------------------------------------------------------------------

# sumdb/note's TestSign: this private key signs this text to exactly this note.
GO_PRIVATE = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VERIFIER = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2"
    "pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


def test_notes_are_signed_as_sumdb_note_signs_them():
    from audit.signing import note_sign

    seed = base64.b64decode(GO_PRIVATE.split("+", 4)[4])[1:]
    key = Ed25519PrivateKey.from_private_bytes(seed)
    assert note_sign(GO_TEXT, key=key, name="PeterNeumann") == GO_NOTE
    name, hashed, public = verifier_parse(GO_VERIFIER)
    assert (name, hashed.hex()) == ("PeterNeumann", "c74f20a3")
    assert key_hash(name, base64.b64decode(GO_VERIFIER.split("+", 2)[2])[1:]) == hashed
    assert note_open(GO_NOTE, {(name, hashed): public}) == (GO_TEXT, ["PeterNeumann"])


@pytest.mark.parametrize(
    ("note", "problem"),
    [
        (GO_NOTE.replace("problem,", "problems,"), "invalid"),
        (GO_TEXT, "not a signed note"),
        (GO_NOTE.replace("PeterNeumann x08", "Someone x08"), "no known key"),
        (GO_NOTE.replace("\u2014 ", "- "), "malformed"),
    ],
    ids=["changed text", "no signature", "unknown key", "malformed line"],
)
def test_a_note_that_does_not_hold_is_refused_with_the_reason(note, problem):
    name, hashed, public = verifier_parse(GO_VERIFIER)
    with pytest.raises(Broken, match=problem):
        note_open(note, {(name, hashed): public})


@pytest.mark.parametrize(
    "body",
    ["origin\n12\n", "origin\nx\nAAAA\n", "origin\n-1\n" + "A" * 43 + "=\n", "\n1\nAAAA\n"],
)
def test_a_checkpoint_body_must_be_origin_size_and_root(body):
    with pytest.raises(Broken):
        checkpoint_parse(body)
