"""nml-stats (processing.stats): a generated annotation with known lengths, and the bundled sample."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from napari_knossos import sample_data
from napari_knossos.annotation.graph import branch_nodes, path_lengths_nm
from napari_knossos.annotation.kzip import Annotation, read_kzip, write_kzip
from napari_knossos.annotation.nml import write_nml
from napari_knossos.annotation.skeleton import Skeleton
from napari_knossos.annotation.synapses import synapse_table
from napari_knossos.processing import stats as S

SCALE = (10.0, 10.0, 25.0)
SAMPLE_KZIP = Path(sample_data.__file__).parent / "annotation" / "synthetic_neuropil.k.zip"


def _annotation():
    """Three neurite trees, two complete synapses and one without a post node; returns the
    skeleton and what each tree must report, computed from the coordinates put in."""
    skel = Skeleton()
    skel.parameters.scale = SCALE
    skel.parameters.experiment = "generated"
    axon = skel.add_tree(name="axon").id
    pos = {"a": (0, 0, 0), "b": (3, 0, 0), "c": (3, 4, 0), "d": (3, 4, 2), "e": (3, -5, 0)}
    n = {k: skel.add_node(p, axon) for k, p in pos.items()}
    axon_edges = [("a", "b"), ("b", "c"), ("c", "d"), ("b", "e")]  # b: three neighbours
    for u, v in axon_edges:
        skel.link(n[u], n[v])
    lone = skel.add_tree(name="lone").id
    g = skel.add_node((20, 20, 20), lone)
    dend = skel.add_tree(name="dendrite").id
    h, i = skel.add_node((10, 10, 10), dend), skel.add_node((10, 10, 14), dend)
    skel.link(h, i)
    skel.link(n["d"], h)  # an edge between trees: in no tree's length
    skel.set_comment(n["c"], "first")
    skel.set_comment(n["e"], "ending")
    skel.set_comment(g, "note")
    skel.push_branchpoint(n["b"])
    skel.push_branchpoint(g)
    for pre, post in ((n["c"], h), (n["d"], i), (n["a"], 999)):
        cleft = skel.add_tree(properties={"synapticCleft": "true", "preSynapse": str(pre), "postSynapse": str(post)})
        skel.add_node((5, 5, 5), cleft.id)

    def nm(a, b):
        return math.dist(np.multiply(a, SCALE), np.multiply(b, SCALE))

    expected = {
        axon: {"nodes": 5, "edges": 4, "path_length_nm": sum(nm(pos[u], pos[v]) for u, v in axon_edges),
               "branch_points": 1, "branchpoint_stack": 1, "comments": 2, "synapses_pre": 3, "synapses_post": 0},
        lone: {"nodes": 1, "edges": 0, "path_length_nm": 0.0, "branch_points": 0, "branchpoint_stack": 1,
               "comments": 1, "synapses_pre": 0, "synapses_post": 0},
        dend: {"nodes": 2, "edges": 1, "path_length_nm": nm((10, 10, 10), (10, 10, 14)), "branch_points": 0,
               "branchpoint_stack": 0, "comments": 0, "synapses_pre": 0, "synapses_post": 2},
    }
    return skel, expected


@pytest.fixture
def generated(tmp_path):
    skel, expected = _annotation()
    nml = tmp_path / "generated.nml"
    write_nml(skel, nml)
    kzip = tmp_path / "generated.k.zip"
    write_kzip(Annotation(skeleton=skel), kzip)
    return nml, kzip, expected


def test_generated_annotation(generated):
    nml, kzip, expected = generated
    stats = S.nml_stats(nml)
    assert stats["experiment"] == "generated" and stats["scale_nm"] == list(SCALE)
    rows = {row["id"]: row for row in stats["trees"]}
    for tid, want in expected.items():
        got = {k: rows[tid][k] for k in want}
        assert got == pytest.approx(want), tid
        assert not rows[tid]["synaptic_cleft"]
    clefts = [row for row in stats["trees"] if row["synaptic_cleft"]]
    assert len(clefts) == 3 and all(row["nodes"] == 1 for row in clefts)
    totals = stats["totals"]
    assert totals["synapses"] == 3 and totals["complete_synapses"] == 2
    assert totals["edges_between_trees"] == 1
    assert totals["nodes"] == 5 + 1 + 2 + 3
    assert totals["path_length_nm"] == pytest.approx(sum(w["path_length_nm"] for w in expected.values()))
    assert S.nml_stats(kzip)["trees"] == stats["trees"]  # the same annotation as .k.zip


def test_scale_option_and_missing_scale(generated, tmp_path):
    nml, _, expected = generated
    axon = min(expected)
    unit = S.nml_stats(nml, scale_xyz=(1, 1, 1))
    assert unit["trees"][0]["path_length_nm"] == pytest.approx(3 + 4 + 2 + 5)  # the axon's edges in voxels
    assert unit["trees"][0]["id"] == axon
    skel, _ = _annotation()
    skel.parameters.scale = None
    write_nml(skel, tmp_path / "noscale.nml")
    stats = S.nml_stats(tmp_path / "noscale.nml")
    assert stats["scale_nm"] is None and stats["totals"]["path_length_nm"] is None
    assert all(row["path_length_nm"] is None for row in stats["trees"])
    assert "no path lengths" in S.format_table(stats)


def test_sample_annotation_against_the_graph_module():
    stats = S.nml_stats(SAMPLE_KZIP)
    skel = read_kzip(SAMPLE_KZIP).skeleton
    lengths = path_lengths_nm(skel)
    table = synapse_table(skel)
    assert [row["id"] for row in stats["trees"]] == sorted(skel.trees)
    for row in stats["trees"]:
        tid = row["id"]
        assert row["nodes"] == len(skel.node_ids(tid))
        assert row["path_length_nm"] == pytest.approx(lengths[tid])
        assert row["branch_points"] == len(branch_nodes(skel, tid))
        assert row["comments"] == sum(skel.tree_of(nid) == tid for nid in skel.comments)
        assert row["synapses_pre"] == int(np.count_nonzero(table.pre_tree == tid))
        assert row["synapses_post"] == int(np.count_nonzero(table.post_tree == tid))
        assert row["synaptic_cleft"] == skel.trees[tid].is_synapse
    assert stats["totals"]["synapses"] == len(table) > 0
    assert stats["totals"]["branch_points"] > 0 and stats["totals"]["comments"] == len(skel.comments)


def _run_cli(argv):
    cli = pytest.importorskip("napari_knossos.cli")
    return cli.main(argv)


def test_nml_stats_command(generated, tmp_path, capsys):
    nml, _, expected = generated
    assert _run_cli(["nml-stats", str(SAMPLE_KZIP)]) == 0
    out = capsys.readouterr().out
    assert "neurite" in out and "total" in out and "10 × 10 × 25 nm" in out
    table = synapse_table(read_kzip(SAMPLE_KZIP).skeleton)
    assert f"synapses: {len(table)} ({int(table.complete.sum())} with pre and post node)" in out
    out_csv = tmp_path / "stats.csv"
    assert _run_cli(["nml-stats", str(nml), "--json", "--csv", str(out_csv)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(S.nml_stats(nml)))
    with open(out_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["id"]) for r in rows] == [row["id"] for row in printed["trees"]]
    axon = str(min(expected))
    row = next(r for r in rows if r["id"] == axon)
    assert float(row["path_length_nm"]) == pytest.approx(expected[int(axon)]["path_length_nm"])
    assert _run_cli(["nml-stats", str(nml), "--scale", "1,1,1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["scale_nm"] == [1.0, 1.0, 1.0]
