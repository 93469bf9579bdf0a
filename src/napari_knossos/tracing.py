"""napari adapter for tracing: one skeleton on a viewer, with KNOSSOS keys and mouse actions.

No Qt here (the dock widget in :mod:`napari_knossos.widgets.tracing` adds buttons, tables and
timers). A :class:`TracingSession` finds the skeleton layers on a viewer (or makes an empty
skeleton that fits the image layers), wraps the model in a
:class:`~napari_knossos.annotation.editing.SkeletonEditor` (modes, undo), keeps the layers in
step through :class:`~napari_knossos.skeleton_layers.SkeletonSync`, and binds keys and mouse
callbacks with napari's public API only.

Mouse (KNOSSOS habit in brackets):
right-click places a node (right-click), Ctrl+right-click a linked branch stub (same);
left-click on a node makes it active, Shift+left adds it to the selection, Ctrl+left toggles
it (left-click, Shift/Ctrl); Shift+left-drag / Ctrl+left-drag from empty canvas draws a box
and adds / toggles the nodes inside it that are shown (the skeleton depth), as KNOSSOS does;
left-drag on a node moves it (middle-drag; middle-drag works too); Alt+left-click on a node links or unlinks it with the active node (Alt+left);
Shift+wheel scales the active node's radius by 10 % (Shift+wheel). Left-drag elsewhere pans
and right-drag zooms, as napari does.

Every mouse press, wheel turn and bound key counts as activity for the working time
(:attr:`TracingSession.activity_callbacks`), edits or not. ``Ctrl+S`` saves
(:attr:`TracingSession.save_handler`: the widget's Save).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from .annotation.editing import EditRefused, Mode, SkeletonEditor
from .annotation.kzip import Annotation
from .annotation.skeleton import Skeleton
from .annotation_layers import ANNOTATION_KEY
from .skeleton_layers import SKELETON_KEY, SYNC_KEY, SkeletonSync, _radius_voxels, skeleton_layer_data
from .view_geometry import displayed_axes, hidden_axes

__all__ = ["KEYS", "TracingSession", "find_skeleton_layers"]

SESSION_KEY = "napari_knossos_session"
PICK_TOLERANCE_PX = 8.0

# key → (action name, description); napari key names. Documented conflicts: with a Labels
# layer selected napari's label keys win (E F L M P X B Z, digits); the image layer's
# C (auto-contrast) and X/Y/Z (3-D plane orientation) are replaced while tracing.
KEYS: dict[str, tuple[str, str]] = {
    "C": ("new_tree", "new tree (while tracing a synapse cleft: end the cleft)"),
    "Shift-C": ("synapse", "start a synapse on the active node, or make one from two selected nodes"),
    "Control-Shift-C": ("reverse_synapse", "reverse the direction of the active synapse"),
    "B": ("push_branchpoint", "push the active node as a branch point"),
    "J": ("pop_branchpoint", "pop the last branch point and jump there"),
    "S": ("jump_to_active", "jump to the active node"),
    "X": ("traverse_forward", "next node in depth-first order"),
    "Shift-X": ("traverse_backward", "previous node in depth-first order"),
    "N": ("next_node", "next node of the node table"),
    "P": ("previous_node", "previous node of the node table"),
    "Z": ("next_tree", "next tree of the tree table"),
    "Shift-Z": ("previous_tree", "previous tree of the tree table"),
    "L": ("jump_to_cycle", "select and jump to a cycle"),
    "A": ("cycle_linking", "linking on → off for the next node → off (Tracing Advanced)"),
    "Delete": ("delete_selected", "delete the selected nodes (else the active node)"),
    "Control-Delete": ("delete_active_tree", "delete the active tree"),
    "Control-Z": ("undo", "undo"),
    "Control-Shift-Z": ("redo", "redo"),
    "Control-S": ("save", "save the annotation (asks for a file name if it has none)"),
    **{f"Control-{(i + 1) % 10}": (f"comment_slot_{i}", f"comment slot {i + 1}") for i in range(10)},
}
LABELS_KEYS = set("EFLMPXBZ") | {"Shift-Z", "Control-Z", "Control-Shift-Z"}


def _modifiers(event) -> set[str]:
    """Lower-case modifier names of a napari mouse event ("shift", "control", "alt", "meta")."""
    return {str(getattr(m, "name", m)).lower() for m in event.modifiers}


def find_skeleton_layers(viewer):
    """(points, vectors) of the first skeleton on the viewer, or (None, None)."""
    points = vectors = None
    for layer in viewer.layers:
        meta = layer.metadata
        if SKELETON_KEY not in meta:
            continue
        role = meta.get("napari_knossos_role")
        if role == "nodes" and points is None:
            points = layer
        elif role == "edges" and vectors is None and (points is None or meta[SKELETON_KEY] is points.metadata[SKELETON_KEY]):
            vectors = layer
    if points is not None and vectors is not None and vectors.metadata[SKELETON_KEY] is not points.metadata[SKELETON_KEY]:
        vectors = None
    return points, vectors


def _image_voxel_size(viewer) -> tuple[float, float, float] | None:
    """Voxel size (x, y, z) nm of the first 3-D image/labels layer."""
    for layer in viewer.layers:
        if layer.__class__.__name__ in ("Image", "Labels") and layer.ndim >= 3:
            z, y, x = (float(s) for s in layer.scale[-3:])
            return (x, y, z)
    return None


class TracingSession:
    """Tracing one skeleton on a napari viewer (keys, mouse, camera jumps)."""

    def __init__(self, viewer, *, name: str = "skeleton", status: Callable[[str], None] | None = None):
        self.viewer = viewer
        self._status_callbacks: list[Callable[[str], None]] = [status] if status else []
        points, vectors = find_skeleton_layers(viewer)
        if points is None or vectors is None:
            skel = Skeleton()
            skel.dialect = "knossos"
            vs = _image_voxel_size(viewer) or (1.0, 1.0, 1.0)
            skel.parameters.scale = vs
            ann = Annotation(skeleton=skel)
            (pd_, pkw, _), (vd, vkw, _) = skeleton_layer_data(skel, vs, name=name, metadata={ANNOTATION_KEY: ann})
            vectors = viewer.add_vectors(vd, **vkw)
            points = viewer.add_points(pd_, **pkw)
        self.points, self.vectors = points, vectors
        self.skel: Skeleton = points.metadata[SKELETON_KEY]
        self.annotation: Annotation = points.metadata.get(ANNOTATION_KEY) or Annotation(skeleton=self.skel)
        self.source: str = points.metadata.get("napari_knossos_source", "")
        self.scale_zyx = np.asarray(points.scale[-3:], np.float64)
        self.voxel_size_xyz = tuple(self.scale_zyx[::-1])
        self.editor = SkeletonEditor(self.skel, Mode.TRACING_ADVANCED if self.skel.num_nodes and len(self.skel.trees) > 1 else Mode.TRACING)
        self.editor.meshes = self.annotation.meshes  # merged and deleted with their trees, undoably
        self.mesh_opacity: float | None = None
        self.editor.subscribe(self._on_change_meshes)
        old = points.metadata.get(SYNC_KEY)
        if old is not None:
            old.disconnect()
        self.sync = SkeletonSync(self.skel, points, vectors, self.voxel_size_xyz, editor=self.editor,
                                 add_layer=self._add_helper_layer, remove_layer=self._remove_helper_layer,
                                 on_refused=self.status)
        self.table_navigator = None  # set by the widget: object with next_node(d) / next_tree(d)
        self.activity_callbacks: list[Callable[[], None]] = []
        self.save_handler: Callable[[], object] | None = None  # the widget's Save (Ctrl+S); else save()
        self.box_layer = None  # the selection box's Shapes layer (hidden but while a box is dragged)
        self.mouse_enabled = True  # off while a segmentation tool owns the mouse
        self.depth = 0  # slices either side of the current one in which nodes show and are clickable
        self._bound: list = []
        self.install_callbacks: list = []  # called after install() has bound the keys (others bind theirs again)
        self._traversal: tuple[int, np.ndarray] | None = None
        points.metadata[SESSION_KEY] = self

    def _add_helper_layer(self, layer) -> None:
        """Add a helper layer (the sync's "(new)" and comment layers, the selection box) without
        making it the active layer, with our keys."""
        active = self.viewer.layers.selection.active
        self.viewer.add_layer(layer)
        if active is not None:
            self.viewer.layers.selection.active = active
        if self._bound:
            self._drop_stale_bindings()
            for key, (name, _) in KEYS.items():
                self._bind(layer, key, self._key_handler(name))

    def _remove_helper_layer(self, layer) -> None:
        if layer in self.viewer.layers:
            self.viewer.layers.remove(layer)
        self._drop_stale_bindings()

    def _drop_stale_bindings(self) -> None:
        """Forget key bindings of layers no longer on the viewer (each helper layer adds ~40)."""
        layers = self.viewer.layers
        self._bound = [b for b in self._bound if b[0] is self.viewer or b[0] in layers]

    # -- display depth ----------------------------------------------------------------------
    def set_skeleton_depth(self, slices: int) -> None:
        """Show nodes and edges up to ``slices`` slices either side of the current one (KNOSSOS
        draws the skeleton near the plane): napari's thick slice along the axis you look along,
        projected for the skeleton layers only (image and labels layers are set to show their
        exact slice). 0: the current slice only; nodes in the band can be clicked."""
        self.depth = max(int(slices), 0)
        dims = self.viewer.dims
        thickness = list(dims.thickness)
        for axis in hidden_axes(self.viewer)[-1:]:  # spatial axis z, y or x
            thickness[dims.ndim - 3 + axis] = (2 * self.depth + 1) * float(self.scale_zyx[axis]) if self.depth else 1.0
        for layer in self.viewer.layers:
            if type(layer).__name__ in ("Image", "Labels") and getattr(layer, "projection_mode", "none") != "none":
                layer.projection_mode = "none"
        for layer in (self.points, self.vectors, self.sync.new_points, self.sync.new_vectors, self.sync.comment_layer):
            if layer is not None:
                layer.projection_mode = "all" if self.depth else "none"
        dims.thickness = tuple(thickness)

    # -- meshes ---------------------------------------------------------------------------
    def mesh_layers(self) -> dict[int, object]:
        """Surface layers of this annotation's meshes, by tree id."""
        return {layer.metadata["napari_knossos_tree_id"]: layer for layer in self.viewer.layers
                if type(layer).__name__ == "Surface" and layer.metadata.get(ANNOTATION_KEY) is self.annotation
                and "napari_knossos_tree_id" in layer.metadata}

    def _on_change_meshes(self, change) -> None:
        if change.kind in ("meshes", "trees_changed", "full"):
            self.sync_meshes()

    def sync_meshes(self) -> None:
        """Make the Surface layers match the annotation's meshes (after merges, deletions, undo)."""
        from .annotation_layers import mesh_layer_data
        from .skeleton_layers import tree_colors

        meshes = self.annotation.meshes
        layers = self.mesh_layers()
        colors = tree_colors(self.skel)
        for tree_id, layer in list(layers.items()):
            if layer.metadata.get("napari_knossos_mesh") is not meshes.get(tree_id):
                self.viewer.layers.remove(layer)  # gone or changed: a changed one is added anew
                del layers[tree_id]
        for tree_id, layer in layers.items():  # the tree's colour changed: recolour its mesh
            color = colors.get(tree_id)
            if color is not None and not np.allclose(layer.vertex_colors[:1], color):
                layer.vertex_colors = np.tile(np.asarray(color, np.float32), (len(layer.data[0]), 1))
        for tree_id, mesh in meshes.items():
            if tree_id in layers:
                continue
            tree = self.skel.trees.get(tree_id)
            label = tree.name if tree is not None and tree.name else f"tree {tree_id}"
            data, kwargs, _ = mesh_layer_data(
                mesh, self.voxel_size_xyz, f"{self.points.name.removesuffix(' nodes')} mesh {label}",
                colors.get(tree_id), {ANNOTATION_KEY: self.annotation, "napari_knossos_tree_id": tree_id,
                                      "napari_knossos_mesh": mesh})
            if self.mesh_opacity is not None:
                kwargs["opacity"] = self.mesh_opacity
            active = self.viewer.layers.selection.active
            self.viewer.add_surface(data, **kwargs)
            if active is not None:
                self.viewer.layers.selection.active = active

    def set_mesh_opacity(self, opacity: float) -> None:
        self.mesh_opacity = float(opacity)
        for layer in self.mesh_layers().values():
            layer.opacity = self.mesh_opacity

    def jump_to_mesh(self, tree_id: int | None = None) -> bool:
        """Centre the view on the middle of a tree's mesh (the active tree's by default)."""
        tree_id = self.editor.active_tree if tree_id is None else tree_id
        mesh = self.annotation.meshes.get(tree_id)
        if mesh is None or not len(mesh.vertices):
            self.status(f"tree {tree_id} has no mesh")
            return False
        world = ((mesh.vertices.min(axis=0) + mesh.vertices.max(axis=0)) / 2)[::-1].astype(np.float64)  # nm z y x
        dims = self.viewer.dims
        offset = dims.ndim - 3
        for axis in range(3):
            dims.set_point(offset + axis, float(world[axis]))
        self.viewer.scene.camera.center = tuple(world.tolist())
        return True

    # -- status ---------------------------------------------------------------------------
    def status(self, message: str) -> None:
        """Show ``message`` in napari's status bar and the widget."""
        self.viewer.status = message
        for callback in self._status_callbacks:
            callback(message)

    def add_status_callback(self, callback: Callable[[str], None]) -> None:
        self._status_callbacks.append(callback)

    def activity(self) -> None:
        """The user did something (key, mouse press, wheel): tell the working-time counters."""
        for callback in self.activity_callbacks:
            callback()

    def _act(self, action: Callable, *args):
        """Run an editor action; a refused edit becomes a status message, not an exception."""
        self.activity()
        try:
            return action(*args)
        except EditRefused as refused:
            self.status(str(refused))
        except (KeyError, ValueError) as error:
            self.status(f"not possible: {error}")
        return None

    # -- coordinates ----------------------------------------------------------------------
    def voxel_of_world(self, world) -> np.ndarray:
        """(x, y, z) mag-1 voxel (rounded) of a world position (z, y, x) in nm."""
        zyx = np.asarray(world, np.float64)[-3:] / self.scale_zyx
        return np.round(zyx[::-1])

    def world_of_node(self, node_id: int) -> np.ndarray:
        return self.skel.position(node_id)[::-1] * self.scale_zyx

    def pick_node(self, world, view_direction=None, tolerance_px: float = PICK_TOLERANCE_PX) -> int | None:
        """The node under the cursor: in 2-D within the current slice and ``tolerance_px``
        screen pixels (or the node's radius); in 3-D the node nearest the camera along the ray."""
        skel = self.skel
        if not skel.num_nodes:
            return None
        pos_nm = np.stack([skel.nodes["z"], skel.nodes["y"], skel.nodes["x"]], axis=1) * self.scale_zyx
        click = np.asarray(world, np.float64)[-3:]
        tol_nm = tolerance_px / max(float(self.viewer.scene.camera.zoom), 1e-12)
        radius_nm = _radius_voxels(skel, self.voxel_size_xyz) * float(self.scale_zyx[-1])  # webKnossos radii are nm
        if self.viewer.dims.ndisplay == 3 and view_direction is not None:
            d = np.asarray(view_direction, np.float64)[-3:]
            d = d / (np.linalg.norm(d) or 1.0)
            rel = pos_nm - click
            along = rel @ d
            dist = np.linalg.norm(rel - along[:, None] * d, axis=1)
            ok = dist <= np.maximum(tol_nm, radius_nm)
            if not ok.any():
                return None
            cand = np.flatnonzero(ok)
            return int(skel.nodes["id"][cand[np.argmin(along[cand])]])
        displayed, hidden = displayed_axes(self.viewer), hidden_axes(self.viewer)
        in_slice = np.ones(skel.num_nodes, bool)
        for a in hidden:
            in_slice &= np.abs(pos_nm[:, a] - click[a]) <= (0.5 + self.depth) * self.scale_zyx[a]
        if not in_slice.any():
            return None
        cand = np.flatnonzero(in_slice)
        dist = np.linalg.norm(pos_nm[cand][:, displayed] - click[displayed], axis=1)
        ok = dist <= np.maximum(tol_nm, radius_nm[cand])
        if not ok.any():
            return None
        return int(skel.nodes["id"][cand[ok][np.argmin(dist[ok])]])

    # -- camera ---------------------------------------------------------------------------
    def jump_to(self, node_id: int | None) -> None:
        """Centre the camera and the current slice on a node (KNOSSOS jumps)."""
        if node_id is None or not self.skel.has_node(node_id):
            return
        world = self.world_of_node(node_id)
        dims = self.viewer.dims
        offset = dims.ndim - 3
        for axis in range(3):
            dims.set_point(offset + axis, float(world[axis]))
        center = list(self.viewer.scene.camera.center)
        center[-3:] = world.tolist() if len(center) >= 3 else world[-len(center):].tolist()
        self.viewer.scene.camera.center = tuple(center[-3:]) if len(center) >= 3 else tuple(world[-2:])

    # -- actions (keys) -------------------------------------------------------------------
    def place_at(self, world, branch_stub: bool = False) -> int | None:
        """Place a node at the clicked voxel (linked to the active node per mode)."""
        pos = self.voxel_of_world(world)
        nid = self._act(lambda: self.editor.place_node(tuple(float(c) for c in pos), branch_stub=branch_stub))
        if nid is not None:
            self.status(f"node {nid} at {tuple(int(c) for c in pos)} in tree {self.skel.tree_of(nid)}")
        return nid

    def select_at(self, world, how: str = "replace", view_direction=None) -> int | None:
        nid = self.pick_node(world, view_direction)
        if nid is None:
            return None
        if how == "replace":
            self.editor.set_active_node(nid)
            self.editor.select_nodes([nid], mode="replace")
        else:
            self.editor.select_nodes([nid], mode=how)
        return nid

    def link_at(self, world, view_direction=None) -> None:
        nid = self.pick_node(world, view_direction)
        active = self.editor.active_node
        if nid is None or active is None or nid == active:
            self.status("link: click a node other than the active node")
            return
        self._act(self.editor.toggle_link, active, nid)

    def new_tree(self) -> None:
        if getattr(self.editor, "synapse_state", "idle") == "cleft":
            self._act(self.editor.end_cleft)
            self.status("cleft ended: the next node you place is the post-synapse")
            return
        tid = self._act(self.editor.new_tree)
        if tid is not None:
            self.status(f"new tree {tid}")

    def synapse(self) -> None:
        selected = sorted(self.editor.selected_nodes)
        if len(selected) == 2 and self.skel.tree_of(selected[0]) != self.skel.tree_of(selected[1]):
            pre = self.editor.active_node if self.editor.active_node in selected else selected[0]
            post = selected[1] if pre == selected[0] else selected[0]
            tid = self._act(self.editor.make_synapse, pre, post)
            if tid is not None:
                self.status(f"synapse {pre} → {post} (cleft tree {tid})")
            return
        pre = self.editor.active_node
        tid = self._act(self.editor.start_synapse)
        if tid is not None:
            self.status(f"synapse on pre-synapse {pre}: trace the cleft (tree {tid}), then press C")

    def reverse_synapse(self) -> None:
        self._act(self.editor.reverse_synapse)

    def push_branchpoint(self) -> None:
        self._act(self.editor.push_branchpoint)

    def pop_branchpoint(self) -> None:
        nid = self._act(self.editor.pop_branchpoint)
        if nid is None:
            self.status("no branch points")
        self.jump_to(nid)

    def jump_to_active(self) -> None:
        self.jump_to(self.editor.active_node)

    def traverse(self, direction: int) -> None:
        nid = self._act(self.editor.traverse, direction)
        self.jump_to(nid)

    def table_step(self, what: str, direction: int) -> None:
        """N/P and Z/Shift+Z: the next node/tree in the widget's filtered, sorted tables (the
        navigator makes it active and asks for the jump)."""
        nav = self.table_navigator
        if nav is None:
            self.status("open the tracing widget's tables to navigate them")
            return
        found = nav.next_node(direction) if what == "node" else nav.next_tree(direction)
        if found is None:
            self.status(f"no {'next' if direction > 0 else 'previous'} {what} in the table")

    def jump_to_cycle(self) -> None:
        from .annotation.graph import find_cycle_edges

        edges = find_cycle_edges(self.skel)
        if not len(edges):
            self.status("no cycles")
            return
        nodes = np.unique(np.asarray(edges).reshape(-1))
        self.editor.select_nodes(nodes.tolist(), mode="replace")
        self.editor.set_active_node(int(nodes[0]))
        self.jump_to(int(nodes[0]))
        self.status(f"cycle through {len(nodes)} nodes selected")

    def delete_selected(self) -> None:
        ids = sorted(self.editor.selected_nodes) or ([self.editor.active_node] if self.editor.active_node is not None else [])
        if ids:
            self._act(self.editor.delete_nodes, ids)

    def delete_active_tree(self) -> None:
        tid = self.editor.active_tree
        if tid is not None:
            self._act(self.editor.delete_trees, [tid])

    def cycle_linking(self) -> None:
        state = self._act(self.editor.cycle_linking)
        if state is not None:
            self.status(f"linking: {state}")

    def comment_slot(self, slot: int) -> None:
        self._act(self.editor.apply_comment_slot, slot)

    def undo(self) -> None:
        if self.editor.can_undo:
            text = self.editor.undo_text
            self._act(self.editor.undo)
            self.status(f"undone: {text}")

    def redo(self) -> None:
        if self.editor.can_redo:
            text = self.editor.redo_text
            self._act(self.editor.redo)
            self.status(f"redone: {text}")

    def scale_active_radius(self, steps: float) -> None:
        active = self.editor.active_node
        if active is not None:
            self._act(self.editor.scale_radius, [active], 1.1 ** steps)

    def save_key(self) -> None:
        """Ctrl+S: the widget's Save (current file, else "Save as"), or :meth:`save` without a widget."""
        if self.save_handler is not None:
            self.save_handler()
            return
        try:
            self.save()
        except (OSError, ValueError) as error:
            self.status(f"not saved: {error}")

    def action(self, name: str) -> Callable[[], None]:
        """The callable behind a :data:`KEYS` action name."""
        simple = {
            "save": self.save_key,
            "new_tree": self.new_tree, "synapse": self.synapse, "reverse_synapse": self.reverse_synapse,
            "push_branchpoint": self.push_branchpoint, "pop_branchpoint": self.pop_branchpoint,
            "jump_to_active": self.jump_to_active, "jump_to_cycle": self.jump_to_cycle,
            "traverse_forward": lambda: self.traverse(1), "traverse_backward": lambda: self.traverse(-1),
            "next_node": lambda: self.table_step("node", 1), "previous_node": lambda: self.table_step("node", -1),
            "next_tree": lambda: self.table_step("tree", 1), "previous_tree": lambda: self.table_step("tree", -1),
            "delete_selected": self.delete_selected, "delete_active_tree": self.delete_active_tree,
            "undo": self.undo, "redo": self.redo, "cycle_linking": self.cycle_linking,
        }
        if name.startswith("comment_slot_"):
            slot = int(name.rsplit("_", 1)[1])
            return lambda: self.comment_slot(slot)
        return simple[name]

    # -- mouse ----------------------------------------------------------------------------
    def _on_mouse_drag(self, viewer, event):
        """KNOSSOS mouse actions (see module docstring); other drags stay napari's."""
        self.activity()  # any press counts as working time, even a pan
        if not self.mouse_enabled:
            return
        button, mods = event.button, _modifiers(event)
        world = tuple(event.position)
        view_dir = getattr(event, "view_direction", None)
        if button == 2:  # right: place on click (a right-drag zooms)
            start = np.asarray(event.pos, float)
            yield
            while event.type == "mouse_move":
                yield
            if np.linalg.norm(np.asarray(event.pos, float) - start) <= 3:
                if self.viewer.dims.ndisplay == 3:
                    self.status("place nodes in a 2-D view (3-D: click selects)")
                else:
                    self.place_at(world, branch_stub="control" in mods)
            return
        if button not in (1, 3):
            return
        if button == 1 and "alt" in mods:
            self.link_at(world, view_dir)
            return
        if button == 1 and ("shift" in mods or "control" in mods):
            how = "add" if "shift" in mods else "toggle"
            if self.select_at(world, how, view_dir) is None and self.viewer.dims.ndisplay == 2:
                yield from self._box_select(event, how)
            return
        nid = self.pick_node(world, view_dir)
        if nid is None:
            return
        if button == 1:
            self.editor.set_active_node(nid)
            self.editor.select_nodes([nid], mode="replace")
        if self.viewer.dims.ndisplay == 3:
            return
        # drag the node: napari must not pan meanwhile
        camera = self.viewer.scene.camera
        pan = camera.mouse_pan
        camera.mouse_pan = False
        moved = False
        try:
            yield
            while event.type == "mouse_move":
                pos = self.voxel_of_world(event.position)
                if not np.array_equal(pos, self.skel.position(nid)):
                    self._act(self.editor.move_nodes, {nid: tuple(float(c) for c in pos)})
                    moved = True
                yield
        finally:
            camera.mouse_pan = pan
            self.editor.seal()  # the next drag is its own undo step
        if moved:
            self.status(f"node {nid} moved to {tuple(int(c) for c in self.skel.position(nid))}")

    def _box_select(self, event, how: str):
        """Drag a selection box from ``event`` (a press on empty canvas) and select the nodes in it.

        The camera must not pan meanwhile: napari sets ``camera.mouse_pan`` from the active layer
        whenever that changes, so it is switched off again after any such change and restored
        at the release."""
        start = np.asarray(event.position, np.float64)
        start_px = np.asarray(event.pos, float)
        camera = self.viewer.scene.camera
        pan = camera.mouse_pan
        box = self._ensure_box_layer()
        active_events = self.viewer.layers.selection.events.active

        def no_pan(_event=None):
            camera.mouse_pan = False

        active_events.connect(no_pan)
        no_pan()
        try:
            yield
            while event.type == "mouse_move":
                box.data = [self._box_corners(start, np.asarray(event.position, np.float64))]
                box.visible = True
                no_pan()
                yield
        finally:
            active_events.disconnect(no_pan)
            box.visible = False
            camera.mouse_pan = pan
        if np.linalg.norm(np.asarray(event.pos, float) - start_px) > 3:
            ids = self.nodes_in_box(start, np.asarray(event.position, np.float64))
            self.editor.select_nodes(ids.tolist(), mode=how)
            self.status(f"{len(ids)} nodes in the box {'added to' if how == 'add' else 'toggled in'} the selection")

    def _box_corners(self, a, b) -> np.ndarray:
        """The box's four corners (z, y, x voxels) in the current slice, from two world positions."""
        a, b = (np.asarray(p, np.float64)[-3:] / self.scale_zyx for p in (a, b))
        disp = displayed_axes(self.viewer)
        corners = np.tile(a, (4, 1))
        corners[[1, 2], disp[0]] = b[disp[0]]
        corners[[2, 3], disp[1]] = b[disp[1]]
        return corners

    def _ensure_box_layer(self):
        """The selection box's Shapes layer, added hidden on first use; a drag only changes its
        data and visibility (adding a layer would change napari's active layer and mouse pan)."""
        if self.box_layer is None or self.box_layer not in self.viewer.layers:
            from napari.layers import Shapes

            corners = np.zeros((4, 3))
            corners[1:3, 1] = corners[2:, 2] = 1.0
            self.box_layer = Shapes([corners], shape_type="rectangle", edge_color="yellow", edge_width=1.5,
                                    face_color=[1, 1, 0, 0.08], scale=tuple(self.scale_zyx), units=self.points.units,
                                    axis_labels=self.points.axis_labels, name="selection box",
                                    visible=False, metadata={"napari_knossos_role": "selection box"})
            self._add_helper_layer(self.box_layer)
        return self.box_layer

    def nodes_in_box(self, a, b) -> np.ndarray:
        """Ids of the nodes inside the box between world positions ``a`` and ``b`` (2-D view): those
        shown in the current slab (the skeleton depth, as clicking picks them) of visible trees."""
        skel = self.skel
        if not skel.num_nodes:
            return np.empty(0, np.int64)
        pos_nm = np.stack([skel.nodes["z"], skel.nodes["y"], skel.nodes["x"]], axis=1) * self.scale_zyx
        a, b = np.asarray(a, np.float64)[-3:], np.asarray(b, np.float64)[-3:]
        inside = np.ones(skel.num_nodes, bool)
        for axis in hidden_axes(self.viewer):
            inside &= np.abs(pos_nm[:, axis] - a[axis]) <= (0.5 + self.depth) * self.scale_zyx[axis]
        for axis in displayed_axes(self.viewer):
            lo, hi = min(a[axis], b[axis]), max(a[axis], b[axis])
            inside &= (pos_nm[:, axis] >= lo) & (pos_nm[:, axis] <= hi)
        hidden_trees = [tid for tid, t in skel.trees.items() if not t.visible]
        if hidden_trees:
            inside &= ~np.isin(skel.nodes["tree"], hidden_trees)
        return skel.nodes["id"][inside].copy()

    def _on_mouse_wheel(self, viewer, event):
        self.activity()
        if not self.mouse_enabled:
            return
        mods = _modifiers(event)
        if "shift" in mods:
            delta = event.delta[1] if event.delta[1] else event.delta[0]
            self.scale_active_radius(1 if delta > 0 else -1)
            event.handled = True

    # -- install --------------------------------------------------------------------------
    def _key_handler(self, name: str):
        """A napari key callback running a :data:`KEYS` action (the key press counts as activity)."""
        func = self.action(name)

        def handler(_target):
            self.activity()
            func()

        return handler

    def _bind(self, target, key: str, func) -> None:
        target.bind_key(key, func, overwrite=True)
        self._bound.append((target, key, func))

    def install(self) -> None:
        """Bind the KNOSSOS keys (viewer, image and skeleton layers) and mouse callbacks."""
        self.uninstall()
        for key, (name, _) in KEYS.items():
            handler = self._key_handler(name)
            self._bind(self.viewer, key, handler)
            for layer in self._key_layers():
                if layer.__class__.__name__ == "Labels" and key in LABELS_KEYS:
                    continue
                self._bind(layer, key, handler)
        self.viewer.mouse_drag_callbacks.append(self._on_mouse_drag)
        self.viewer.mouse_wheel_callbacks.append(self._on_mouse_wheel)
        self.sync.redraw_highlight()
        for callback in list(self.install_callbacks):
            callback()

    def _key_layers(self):
        ours = {self.points, self.vectors, self.sync.new_points, self.sync.new_vectors}
        return [layer for layer in self.viewer.layers
                if layer in ours or layer.__class__.__name__ in ("Image", "Labels")]

    def uninstall(self) -> None:
        from napari.utils.key_bindings import coerce_keybinding

        for target, key, func in self._bound:
            if target.keymap.get(coerce_keybinding(key)) is not func:
                continue  # bound over since (the segmentation's C): not ours to remove
            try:
                target.bind_key(key, None, overwrite=True)
            except (ValueError, KeyError):
                pass
        self._bound.clear()
        if self.box_layer is not None and self.box_layer in self.viewer.layers:
            self.viewer.layers.remove(self.box_layer)
        self.box_layer = None
        for callbacks, cb in ((self.viewer.mouse_drag_callbacks, self._on_mouse_drag),
                              (self.viewer.mouse_wheel_callbacks, self._on_mouse_wheel)):
            if cb in callbacks:
                callbacks.remove(cb)

    # -- saving ---------------------------------------------------------------------------
    def save(self, path: str | None = None) -> str:
        """Write the annotation (KNOSSOS .k.zip, or .nml by extension) atomically."""
        from .annotation.kzip import write_kzip
        from .annotation.nml import write_nml

        path = path or (self.source if ";" not in self.source else "")
        if not path:
            raise ValueError("no file name: choose where to save")
        self.sync.flush()
        if str(path).lower().endswith(".nml"):
            write_nml(self.skel, path)
        else:
            self.annotation.skeleton = self.skel
            write_kzip(self.annotation, path)
        self.source = str(path)
        self.points.metadata["napari_knossos_source"] = self.source
        self.editor.mark_saved()
        self.status(f"saved {Path(path).name}")
        return str(path)
