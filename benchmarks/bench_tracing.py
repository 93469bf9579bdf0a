"""Skeleton layers and tracing in napari at 100k nodes (issues 3 and 4).

    xvfb-run -a -s "-screen 0 1280x1024x24" .venv/bin/python benchmarks/bench_tracing.py
        [--nodes 100000 --trees 100 --repeat 50 --out benchmarks/results/tracing.json]

Measured in a shown napari viewer (software OpenGL under xvfb on the VM):
- building the layer data and adding the Points + Vectors layers (issue 3 goal < 2 s);
- adding one node through the model + the incremental layer update (issue 3 goal < 20 ms);
- placing a node through the tracing dock widget's session (editor, undo record, layer
  update, tables and labels; issue 4 goal < 20 ms), and the same including one Qt event-loop
  pass (the repaint);
- undo of a placement (issue 4 goal < 20 ms); undo of a one-node delete;
- folding the "(new)" layers into the main ones (runs when the user pauses);
- building the node table and filtering it by a regular expression (issue 4 goal < 200 ms).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_skeleton_ops import random_skeleton


def ms(samples) -> dict:
    s = [1e3 * x for x in samples]
    return {"median": statistics.median(s), "min": min(s), "max": max(s), "n": len(s)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=100_000)
    ap.add_argument("--trees", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--out", default=str(HERE / "results" / "tracing.json"))
    args = ap.parse_args()

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_knossos.annotation.editing import Mode
    from napari_knossos.skeleton_layers import skeleton_layer_data
    from napari_knossos.widgets.tables import NodeTableModel
    from napari_knossos.widgets.tracing import TracingWidget

    skel = random_skeleton(args.nodes, args.trees)
    for i, nid in enumerate(skel.nodes["id"][:: max(args.nodes // 10_000, 1)].tolist()):
        skel.comments[int(nid)] = f"{'soma' if i % 7 == 0 else 'spine'} {i}"
    results: dict = {"nodes": skel.num_nodes, "trees": len(skel.trees)}

    viewer = napari.Viewer(show=True)
    pos = skel.positions()
    lo, hi = pos.min(axis=0), pos.max(axis=0)
    t0 = time.perf_counter()
    layers = skeleton_layer_data(skel, skel.parameters.scale)
    t1 = time.perf_counter()
    vectors = viewer.add_vectors(layers[1][0], **layers[1][1])
    points = viewer.add_points(layers[0][0], **layers[0][1])
    QApplication.processEvents()
    t2 = time.perf_counter()
    results["layer_data_ms"] = 1e3 * (t1 - t0)
    results["build_layers_ms"] = 1e3 * (t2 - t0)
    del vectors, points

    widget = TracingWidget(viewer)  # the dock widget: session, tables, labels, timers
    viewer.window.add_dock_widget(widget, name="Tracing")
    session = widget.session
    ed = session.editor
    ed.set_mode(Mode.TRACING_ADVANCED)
    start = int(skel.nodes["id"][len(skel.nodes["id"]) // 2])
    ed.set_active_node(start)
    session.jump_to(start)
    QApplication.processEvents()
    scale = np.asarray(session.scale_zyx)
    base = skel.position(start)

    def world(i):
        x, y, z = base + np.array([i % 50, i // 50, 0])
        return np.array([z, y, x]) * scale

    place, place_paint = [], []
    for i in range(args.repeat):
        t = time.perf_counter()
        session.place_at(world(i + 1))
        t_place = time.perf_counter()
        QApplication.processEvents()
        place.append(t_place - t)
        place_paint.append(time.perf_counter() - t)
    results["place_node_ms"] = ms(place)
    results["place_node_with_repaint_ms"] = ms(place_paint)

    undo = []
    for _ in range(min(args.repeat, 20)):
        t = time.perf_counter()
        session.undo()
        undo.append(time.perf_counter() - t)
        QApplication.processEvents()
    results["undo_place_ms"] = ms(undo)

    t = time.perf_counter()
    session.sync.flush()
    QApplication.processEvents()
    results["flush_new_layers_ms"] = 1e3 * (time.perf_counter() - t)

    delete, undo_delete = [], []
    for i in range(5):
        nid = int(skel.nodes["id"][1000 + 37 * i])
        t = time.perf_counter()
        ed.delete_nodes([nid])
        delete.append(time.perf_counter() - t)
        t = time.perf_counter()
        ed.undo()
        undo_delete.append(time.perf_counter() - t)
    results["delete_node_full_redraw_ms"] = ms(delete)
    results["undo_delete_full_redraw_ms"] = ms(undo_delete)

    app = QApplication.instance()
    assert app is not None
    t = time.perf_counter()
    model = NodeTableModel(ed)
    results["node_table_build_ms"] = 1e3 * (time.perf_counter() - t)
    filt = []
    for pattern in [r"^soma \d+$", r"spine 1\d\d", r"(soma|spine) 4"] * 3:
        t = time.perf_counter()
        model.set_filter(text=pattern, regex=True)
        filt.append(time.perf_counter() - t)
    results["node_table_regex_filter_ms"] = ms(filt)
    results["node_table_rows_after_filter"] = model.rowCount()
    viewer.close()

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"{results['nodes']} nodes, {results['trees']} trees; extent {lo.round()}–{hi.round()} voxels")
    for key, value in results.items():
        if isinstance(value, dict):
            print(f"{key:34s} median {value['median']:8.2f} ms  (min {value['min']:.2f}, max {value['max']:.2f}, n {value['n']})")
        elif key.endswith("_ms"):
            print(f"{key:34s} {value:8.1f} ms")


if __name__ == "__main__":
    main()
