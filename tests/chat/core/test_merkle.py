"""Merkle trees (specs/chat.md §19): the Certificate Transparency reference roots, every proof
of the vector file, and proofs that must fail."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pchat.chat.core import merkle

VECTORS: Final = Path(__file__).parents[3] / "specs" / "vectors" / "chat" / "merkle.json"
LEAVES: Final = [bytes.fromhex(x) for x in json.loads(VECTORS.read_text())["leaves"]]
TREES: Final = json.loads(VECTORS.read_text())["trees"]

# Transcribed from the Certificate Transparency reference tests, so a clone without the vector
# file still checks the tree shape: roots of the first 1, 3 and 8 leaves above.
CT_ROOTS: Final = {
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}


@pytest.mark.parametrize("size", sorted(CT_ROOTS))
def test_roots_match_the_reference_values(size: int) -> None:
    assert merkle.root(LEAVES[:size]).hex() == CT_ROOTS[size]


@pytest.mark.parametrize("tree", TREES, ids=lambda t: f"size{t['size']}")
def test_vector_roots_and_proofs(tree: dict[str, object]) -> None:
    size = int(str(tree["size"]))
    leaves = LEAVES[:size]
    root, proofs = merkle.proofs(leaves)
    assert root.hex() == tree["root"] == merkle.root(leaves).hex()
    assert [[p.hex() for p in proof] for proof in proofs] == tree["proofs"]
    for index, proof in enumerate(proofs):
        assert merkle.proof(leaves, index) == proof
        assert merkle.verify(root, leaves[index], index, size, proof)


def test_a_proof_fails_for_another_leaf_index_or_root() -> None:
    leaves = LEAVES[:7]
    root, proofs = merkle.proofs(leaves)
    assert not merkle.verify(root, leaves[2], 3, 7, proofs[2])
    assert not merkle.verify(root, b"other", 2, 7, proofs[2])
    assert not merkle.verify(bytes(32), leaves[2], 2, 7, proofs[2])
    assert not merkle.verify(root, leaves[2], 2, 7, proofs[2][:-1])
    assert not merkle.verify(root, leaves[2], 2, 7, (*proofs[2], bytes(32)))


def test_malformed_proofs_are_invalid_not_errors() -> None:
    root, proofs = merkle.proofs(LEAVES[:4])
    assert not merkle.verify(root, LEAVES[0], 0, 4, (b"short", *proofs[0][1:]))
    assert not merkle.verify(root, LEAVES[0], -1, 4, proofs[0])
    assert not merkle.verify(root, LEAVES[0], 4, 4, proofs[0])
    assert not merkle.verify(root, LEAVES[0], 0, merkle.MAX_LEAVES + 1, proofs[0])
    assert not merkle.verify(root, LEAVES[0], 0, 4, [bytes(32)] * (merkle.MAX_PROOF + 1))


def test_the_root_alone_does_not_fix_the_size() -> None:
    # Why a signature over a root must also sign the number of leaves (§19).
    leaves = LEAVES[:3]
    root, proofs = merkle.proofs(leaves)
    assert merkle.verify(root, leaves[0], 0, 4, proofs[0])


def test_sizes_outside_the_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match=r"1\.\.65536 leaves"):
        merkle.root([])
    with pytest.raises(ValueError, match="not in a tree of 2"):
        merkle.proof(LEAVES[:2], 2)


@given(st.lists(st.binary(max_size=8), min_size=1, max_size=70))
def test_every_leaf_of_any_tree_proves(leaves: list[bytes]) -> None:
    root, proofs = merkle.proofs(leaves)
    assert root == merkle.root(leaves)
    for index, proof in enumerate(proofs):
        assert proof == merkle.proof(leaves, index)
        assert len(proof) <= merkle.MAX_PROOF
        assert merkle.verify(root, leaves[index], index, len(leaves), proof)
