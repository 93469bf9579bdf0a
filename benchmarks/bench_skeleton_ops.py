"""Skeleton editing and graph operations on a 1,000,000-node annotation.

    .venv/bin/python benchmarks/bench_skeleton_ops.py [--nodes 1000000 --trees 10000]
                                                      [--out benchmarks/results/skeleton_ops.json]

A random skeleton (trees of equal size, each a chain with random side branches, random-walk
positions) is built once; each operation is timed on it. "cold" rows first invalidate the
graph cache the way any edge edit does (the edges array is replaced); "warm" rows reuse it.
Prints a table and writes the numbers (milliseconds) as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from napari_knossos.annotation import graph
from napari_knossos.annotation.skeleton import Skeleton

HERE = Path(__file__).resolve().parent


def random_skeleton(num_nodes: int, num_trees: int, seed: int = 0) -> Skeleton:
    """Trees of num_nodes / num_trees nodes: mostly chains (90 %), else a branch off a random
    earlier node of the same tree; ids 1..N, tree t holds a contiguous id range."""
    rng = np.random.default_rng(seed)
    per_tree = num_nodes // num_trees
    n = per_tree * num_trees
    k = np.tile(np.arange(per_tree), num_trees)  # index within the tree
    base = np.repeat(np.arange(num_trees) * per_tree, per_tree)
    branch = rng.random(n) < 0.1
    parent_k = np.where(branch, (rng.random(n) * np.maximum(k, 1)).astype(np.int64), k - 1)
    child = np.flatnonzero(k > 0)
    edges = np.stack([base[child] + parent_k[child] + 1, child + 1], axis=1)
    steps = rng.normal(0, 20, (n, 3))
    steps[k == 0] = rng.uniform(0, 50_000, (num_trees, 3))
    positions = np.cumsum(steps, axis=0)  # chain-like random walk per tree
    skel = Skeleton()
    skel.parameters.scale = (11.24, 11.24, 28.0)
    for t in range(1, num_trees + 1):
        skel.add_tree(id=t)
    skel.set_nodes({"id": np.arange(1, n + 1), "tree": np.repeat(np.arange(1, num_trees + 1), per_tree),
                    "x": positions[:, 0], "y": positions[:, 1], "z": positions[:, 2],
                    "radius": np.full(n, 1.5), "time": np.arange(n)})
    skel.set_edges(edges)
    return skel


def timed(fn, repeat: int = 1, setup=None) -> dict:
    """Run fn() ``repeat`` times (setup() before each, untimed); stats in ms."""
    times = []
    for _ in range(repeat):
        arg = setup() if setup else None
        t0 = time.perf_counter()
        fn(arg) if setup else fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return {"mean_ms": statistics.fmean(times), "median_ms": statistics.median(times), "max_ms": max(times),
            "runs": repeat}


def invalidate(skel: Skeleton) -> None:
    skel.edges = skel.edges.copy()  # what any edge edit does to the cache


def run(num_nodes: int, num_trees: int) -> dict:
    t0 = time.perf_counter()
    skel = random_skeleton(num_nodes, num_trees)
    build_s = time.perf_counter() - t0
    results: dict[str, dict] = {}
    rng = np.random.default_rng(1)

    # tracing: 100 consecutive add-and-link, like right-clicks extending the active node
    active = int(skel.node_ids(1)[-1])

    def add_linked():
        nonlocal active
        active = graph.add_linked_node(skel, (100.0, 200.0, 300.0), 1, link_to=active)

    results["add_node+link (100 consecutive, first allocates spare capacity)"] = timed(add_linked, 100)
    results["add_node+link (100 more)"] = timed(add_linked, 100)
    results["add_node alone"] = timed(lambda: skel.add_node((1.0, 2.0, 3.0), 2), 100)

    def add_then_traverse():
        add_linked()
        graph.dfs_order(skel, active, "backward")  # the cache absorbs the appended node and edge

    graph.dfs_order(skel, active)
    results["add_node+link, then dfs_order (graph cache updated, not rebuilt)"] = timed(add_then_traverse, 20)

    results["adjacency build (cold)"] = timed(lambda _: graph.adjacency(skel), 5, setup=lambda: invalidate(skel))

    victims = iter(rng.choice(skel.node_ids(3), 10, replace=False).tolist())
    results["delete_nodes (one node)"] = timed(lambda: skel.delete_nodes([next(victims)]), 10)

    pairs = iter(range(100, 120, 2))
    results["merge_trees (two 100-node trees)"] = timed(
        lambda: graph.merge_trees(skel, (t := next(pairs)), t + 1), 10)
    results["merge_trees with link"] = timed(
        lambda: graph.merge_trees(skel, 200, 201, link=(int(skel.node_ids(200)[-1]), int(skel.node_ids(201)[0]))), 1)

    trees = iter(range(300, 400))
    results["split_tree_at_edge (100-node tree)"] = timed(
        lambda edge: graph.split_tree_at_edge(skel, *edge), 10, setup=lambda: _middle_edge(skel, next(trees)))
    results["extract_component (cold cache)"] = timed(
        lambda edge: graph.extract_component(skel, edge[1]), 10,
        setup=lambda: _unlink_middle(skel, next(trees)))
    results["extract_component (warm cache)"] = timed(
        lambda edge: graph.extract_component(skel, edge[1]), 10,
        setup=lambda: _warm(skel, _unlink_middle(skel, next(trees))))
    results["split_connected_components (tree in 2 parts)"] = timed(
        lambda tid: graph.split_connected_components(skel, tid), 10,
        setup=lambda: _detach_middle(skel, next(trees)))
    start = int(skel.node_ids(500)[0])
    results["dfs of a 100-node tree (cold cache)"] = timed(lambda _: graph.dfs_order(skel, start), 5,
                                                           setup=lambda: invalidate(skel))
    results["dfs of a 100-node tree (warm cache)"] = timed(lambda: graph.dfs_order(skel, start), 20)
    results["path lengths of all trees (cold)"] = timed(lambda _: graph.path_lengths_nm(skel), 3,
                                                        setup=lambda: invalidate(skel))
    results["path lengths of all trees (warm)"] = timed(lambda: graph.path_lengths_nm(skel), 5)
    results["path length of one tree"] = timed(lambda: graph.path_length_nm(skel, 600), 5)
    results["connected components of all (cold)"] = timed(lambda _: graph.connected_components(skel), 3,
                                                          setup=lambda: invalidate(skel))
    results["connected components of all (warm)"] = timed(lambda: graph.connected_components(skel), 5)
    results["connected components of one tree"] = timed(lambda: graph.connected_components(skel, 700), 5)
    graph.has_cycle(skel)
    results["has_cycle (all, warm)"] = timed(lambda: graph.has_cycle(skel), 3)
    results["node_degree (all, warm)"] = timed(lambda: graph.node_degree(skel), 5)
    assert len(skel.trees) > 0 and skel.num_nodes > 0.99 * num_nodes
    return {"nodes": skel.num_nodes, "edges": skel.num_edges, "trees": len(skel.trees),
            "build_skeleton_s": build_s, "operations": results}


def _middle_edge(skel: Skeleton, tree_id: int) -> tuple[int, int]:
    """(parent, child): the edge from the tree's middle node to its smaller-id neighbour."""
    ids = skel.node_ids(tree_id)
    b = int(ids[len(ids) // 2])
    return int(graph.neighbors(skel, b)[0]), b


def _unlink_middle(skel: Skeleton, tree_id: int) -> tuple[int, int]:
    a, b = _middle_edge(skel, tree_id)
    skel.unlink(a, b)
    return a, b


def _detach_middle(skel: Skeleton, tree_id: int) -> int:
    _unlink_middle(skel, tree_id)
    return tree_id


def _warm(skel: Skeleton, value):
    graph.adjacency(skel)
    return value


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=1_000_000)
    ap.add_argument("--trees", type=int, default=10_000)
    ap.add_argument("--out", default=str(HERE / "results" / "skeleton_ops.json"))
    args = ap.parse_args(argv)
    result = run(args.nodes, args.trees)
    print(f"{result['nodes']} nodes, {result['edges']} edges, {result['trees']} trees "
          f"(built in {result['build_skeleton_s']:.2f} s)")
    width = max(map(len, result["operations"]))
    print(f"{'operation':<{width}}  {'mean ms':>9}  {'median ms':>9}  {'max ms':>9}  runs")
    for name, r in result["operations"].items():
        print(f"{name:<{width}}  {r['mean_ms']:9.2f}  {r['median_ms']:9.2f}  {r['max_ms']:9.2f}  {r['runs']:4d}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
