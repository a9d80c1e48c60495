"""Export CLI: writes a StreamingT2V model directory (TorchScript components + tokenizer + manifest.json).

Usage::

    # random weights (tests, fixtures); models/tiny/ is this with the default seed, run with /usr/bin/python3
    python3 -m models.export --config tiny --out models/tiny [--seed 0]

    # the released weights (spec §5); files are saved from CPU, --device only runs the export checks
    python3 -m models.export --config full --streamingt2v-ckpt checkpoints/streaming_t2v.ckpt \\
        --modelscope-dir text-to-video-ms-1.7b --vid2vid-dir damo-video-to-video \\
        --dtype fp16 --device cuda --out models/full

    # full-size networks with RANDOM weights and the tiny tokenizer: for benchmarks only (same shapes and FLOPs as
    # the released networks, meaningless videos); 6.4 B parameters, about 12 GiB in fp16; --no-verify skips the checks
    python3 -m models.export --config full --random-weights --dtype fp16 --device cuda --out /data/full-random

    # the operator list of libtorch 1.13 used by the op check (run once with torch 1.13)
    python3 -m models.export --write-op-list

Every component is ``torch.jit.script``-ed (never ``optimize_for_inference``: its output cannot be saved, and
freezing happens at load time in C++), saved, loaded back and run once at the spec's ``example_dims``: the output
must equal the eager module's (fp32: max abs diff <= 1e-4) and have the manifest's shapes; the forward argument
names must equal the manifest's input names; and every ``aten::`` operator must exist in libtorch 1.13
(``models/libtorch_1_13_ops.txt``), so one directory loads with libtorch 1.13 (CI) and 2.x (CUDA).
Weights given as files are loaded with ``strict=True`` through the key mappings in ``state_dict_keys_*.py``.
"""
import argparse
import json
import os
import sys
from dataclasses import replace
from typing import Dict, List, Optional, Sequence

import torch

from . import manifest as mf
from . import tokenizer as tk
from . import world
from .export_components import (RESOLUTIONS, as_tuple, aten_ops, build_from_checkpoints, build_random,
                                component_specs, count_parameters, example_inputs, ops_missing_in_libtorch_113,
                                script_module, write_libtorch_ops_file)
from .configs_unet import get_config as get_net_config, widths_of
from .fused_attention import enable_fused_attention, fused_attention_available
from .stage2 import Stage2UNet
from .unet3d import UNet3DConditionModel

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DTYPE_NAMES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}
FP32_TOLERANCE = 1e-4


class ExportError(RuntimeError):
    """A component failed an export check (schema, shapes, eager parity, operator set)."""


def _load_tokenizer(config: str, modelscope_dir: Optional[str]) -> tk.ClipBPE:
    if modelscope_dir is not None:
        return tk.from_hf_dir(os.path.join(modelscope_dir, "tokenizer"))
    return tk.tiny_tokenizer()  # the callers allow a full config without official weights only with --random-weights


def _ddim_config(modelscope_dir: Optional[str]) -> dict:
    """``scheduler/scheduler_config.json`` of the ModelScope repo when given, else the spec's copy of it."""
    if modelscope_dir is not None:
        path = os.path.join(modelscope_dir, "scheduler", "scheduler_config.json")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                return json.load(f)
    return dict(mf.MODELSCOPE_DDIM_CONFIG)


def _with_given_weights(factories: Dict, weights_file: str, config: str) -> Dict:
    """Wrap the random factories so each module loads ``torch.load(weights_file)[role]`` strictly. The stage-1
    and stage-2 UNets are built at the block widths of their weights (``configs_unet.widths_of``): UNets wider
    than the config's (``models.train.all --unet-channels``) export without a config of their own."""
    given = torch.load(weights_file, map_location="cpu")
    missing = [role for role in mf.ROLES if role not in given]
    if missing:
        raise ExportError(f"{weights_file}: no state dict for {missing}")

    def wrap(role):
        def build():
            net = get_net_config(config)
            if role == "unet_stage1":
                module = UNet3DConditionModel(widths_of(net.unet, given[role]))
            elif role == "unet_stage2":
                module = Stage2UNet(replace(net, unet=widths_of(net.unet, given[role], "base_model.")))
            else:
                module = factories[role]()
            module.load_state_dict(given[role], strict=True)
            return module
        return build
    return {role: wrap(role) for role in factories}


def _check_component(spec, eager: torch.nn.Module, loaded: torch.jit.ScriptModule, dtype: torch.dtype,
                     device: str, vocab: int) -> float:
    """Run eager and reloaded TorchScript at ``spec.example_dims``; returns the max abs difference."""
    inputs = example_inputs(spec, spec.example_dims, dtype, device, vocab=vocab)
    with torch.no_grad():
        want = as_tuple(eager(*inputs))
        got = as_tuple(loaded(*inputs))
    if len(got) != len(spec.outputs):
        raise ExportError(f"{spec.role}: {len(got)} outputs, manifest lists {len(spec.outputs)}")
    diff = 0.0
    for out_spec, w, g in zip(spec.outputs, want, got):
        shape = mf.eval_shape(out_spec.shape, spec.example_dims)
        if list(g.shape) != shape or list(w.shape) != shape:
            raise ExportError(f"{spec.role}.{out_spec.name}: shape {list(g.shape)}, manifest says {shape}")
        if g.dtype != dtype:
            raise ExportError(f"{spec.role}.{out_spec.name}: dtype {g.dtype}, expected {dtype}")
        diff = max(diff, (w.float() - g.float()).abs().max().item())
    if dtype == torch.float32 and diff > FP32_TOLERANCE:
        raise ExportError(f"{spec.role}: TorchScript differs from eager by {diff}")
    return diff


def export_directory(out_dir: str, config: str = "tiny", seed: int = 0, streamingt2v_ckpt: Optional[str] = None,
                     modelscope_dir: Optional[str] = None, vid2vid_dir: Optional[str] = None,
                     dtype: str = "fp32", device: str = "cpu", verify: bool = True, allow_new_ops: bool = False,
                     weights_file: Optional[str] = None, log=print, name: Optional[str] = None,
                     defaults_override: Optional[dict] = None, prediction_type: Optional[str] = None,
                     random_weights: bool = False, attention: str = "math",
                     prompt_words: Optional[Sequence[str]] = None) -> dict:
    """Write the model directory ``out_dir`` and return its manifest (see module docstring).

    Weights: random (``seed``), or ``weights_file`` (``{role: state_dict}``, our module names, strict), or the
    three official sources (all of ``streamingt2v_ckpt``, ``modelscope_dir``, ``vid2vid_dir``).
    ``random_weights`` allows ``config='full'`` without the official weights: full-size random networks with the
    tiny word-level tokenizer, for benchmarks only (the manifest's ``created_by.purpose`` says so).
    ``attention``: "math" (matmul + softmax, loads in libtorch 1.13), "sdpa" (``scaled_dot_product_attention``,
    fused kernels on CUDA; torch >= 2.0, and the manifest then says ``min_libtorch: "2.0"``), or "auto" (sdpa when
    this torch has it).
    ``prompt_words``: every word the text encoder saw in training (a model trained on a closed world, e.g. the
    embedded default model: ``world.CORE_WORDS``); the manifest's ``prompt_words``, from which the library warns
    about the words of a prompt outside it. None (official weights, open vocabulary): no list, no warning.
    """
    if attention not in ("math", "sdpa", "auto"):
        raise ExportError(f"attention must be math, sdpa or auto, not {attention!r}")
    fused = attention == "sdpa" or (attention == "auto" and fused_attention_available())
    weights = [streamingt2v_ckpt, modelscope_dir, vid2vid_dir]
    if weights_file is not None and any(w is not None for w in weights):
        raise ExportError("--weights and the official weight options are exclusive")
    if any(w is not None for w in weights) and not all(w is not None for w in weights):
        raise ExportError("give all of --streamingt2v-ckpt, --modelscope-dir, --vid2vid-dir, or none (random)")
    official = all(w is not None for w in weights)
    if random_weights and (official or weights_file is not None):
        raise ExportError("--random-weights excludes --weights and the official weight options")
    if config == "full" and not official and not random_weights:
        raise ExportError("--config full needs the official weights (--streamingt2v-ckpt, --modelscope-dir, "
                          "--vid2vid-dir), or --random-weights for a benchmark-only directory")
    benchmark_only = config != "tiny" and not official
    torch_dtype = DTYPES[dtype]
    if verify and device == "cpu" and torch_dtype != torch.float32:
        log(f"note: {dtype} forward checks are skipped on CPU (use --device cuda to run them)")
        verify = False
    os.makedirs(out_dir, exist_ok=True)

    tok = _load_tokenizer(config, modelscope_dir)
    factories = (build_from_checkpoints(config, streamingt2v_ckpt, modelscope_dir, vid2vid_dir) if official
                 else build_random(config, seed))
    if weights_file is not None:
        factories = _with_given_weights(factories, weights_file, config)
    vocab = max(tok.vocab.values()) + 1
    components: List[dict] = []
    needs_2 = False
    for spec in component_specs(config):
        module = factories[spec.role]().eval().to(torch_dtype)
        switched = enable_fused_attention(module) if fused else 0
        path = os.path.join(out_dir, spec.file)
        torch.jit.save(script_module(module.to("cpu")), path)
        loaded = torch.jit.load(path, map_location=device)
        names = [a.name for a in loaded.forward.schema.arguments[1:]]
        if names != [t.name for t in spec.inputs]:
            raise ExportError(f"{spec.role}: forward arguments {names} differ from the manifest")
        ops = aten_ops(loaded)
        missing = ops_missing_in_libtorch_113(ops)
        needs_2 = needs_2 or bool(missing)
        if fused:  # the one op fused attention adds is expected; the manifest says which libtorch it needs
            missing = [op for op in missing if not op.startswith("aten::scaled_dot_product_attention")]
        if missing and not allow_new_ops:
            raise ExportError(f"{spec.role}: operators missing in libtorch 1.13: {missing} (the file would not load "
                              "there; avoid them, e.g. use_sdpa=False, or pass --allow-new-ops)")
        note = ""
        if verify:
            diff = _check_component(spec, module.to(device), loaded, torch_dtype, device, vocab)
            note = f", TorchScript vs eager max abs diff {diff:.3g}"
        entry = {"role": spec.role, "file": spec.file, "module_class": spec.module_class,
                 "dtype": DTYPE_NAMES[torch_dtype],
                 "inputs": [t.to_json(DTYPE_NAMES[torch_dtype]) for t in spec.inputs],
                 "outputs": [t.to_json(DTYPE_NAMES[torch_dtype]) for t in spec.outputs],
                 "example_dims": dict(spec.example_dims), "parameters": count_parameters(module),
                 "aten_ops": ops}
        components.append(entry)
        fused_note = f", fused attention in {switched} layers" if switched else ""
        log(f"{spec.file}: {entry['parameters']:,} parameters, {len(ops)} aten ops{fused_note}{note}")
        del module, loaded

    tok_files = [os.path.basename(p) for p in tk.write_tokenizer_files(tok, out_dir)]
    tokenizer_entry = {"file": tok_files[0], "config_file": tok_files[1], "max_length": tok.max_length,
                       "bos_id": tok.bos_id, "eos_id": tok.eos_id}
    size12, size3, canvas = RESOLUTIONS[config]
    manifest = {
        "format": mf.FORMAT,
        "format_version": mf.FORMAT_VERSION,
        "name": name or (f"{config}-random" if benchmark_only else config),
        "created_by": {"tool": "python3 -m models.export", "torch": torch.__version__, "config": config,
                       "weights": "official" if official else (f"given ({os.path.basename(weights_file)})"
                                                               if weights_file else f"random (seed {seed})"),
                       **({"purpose": "benchmark only: full-size networks with random weights and the tiny "
                                      "word-level tokenizer; the videos are noise"} if benchmark_only else {})},
        **({"min_libtorch": "2.0"} if needs_2 else {}),
        "components": components,
        # stages 1-2: ModelScope CLIPTokenizer, pad = its pad_token; stage 3: open_clip.tokenize, pads with 0
        "tokenizers": {"text_encoder": dict(tokenizer_entry, pad_id=tok.pad_id),
                       "enhancer_text_encoder": dict(tokenizer_entry, pad_id=0)},
        "schedulers": mf.schedulers(_ddim_config(modelscope_dir), prediction_type),
        "defaults": mf.merge_defaults(mf.defaults(config, size12, size3, canvas), defaults_override or {}),
        "sources": mf.FULL_SOURCES if official else mf.tiny_sources(seed, weights_file),
        "files": mf.file_table(out_dir, [c["file"] for c in components] + tok_files),
    }
    if prompt_words is not None:
        manifest["prompt_words"] = mf.prompt_words(prompt_words)
    mf.write_manifest(out_dir, manifest)
    log(f"wrote {os.path.join(out_dir, mf.MANIFEST_NAME)}")
    return manifest


def _read_json(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _reexec_with_fixed_hash_seed(argv: List[str]) -> None:
    """TorchScript writes ``Final`` class constants in set order, which follows Python's string hash seed: fix
    PYTHONHASHSEED so that the same export gives byte-identical files (and sha256s)."""
    if os.environ.get("PYTHONHASHSEED") != "0":
        env = dict(os.environ, PYTHONHASHSEED="0")
        os.execve(sys.executable, [sys.executable, "-m", "models.export", *argv], env)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", choices=sorted(RESOLUTIONS), default="tiny", help="network sizes")
    parser.add_argument("--out", help="output directory")
    parser.add_argument("--seed", type=int, default=0, help="torch seed of random weights")
    parser.add_argument("--weights", help="torch file {role: state_dict} in this package's module names "
                        "(e.g. trained tiny networks); loaded strictly over the --config architecture")
    parser.add_argument("--streamingt2v-ckpt", help="streaming_t2v.ckpt (PAIR/StreamingT2V)")
    parser.add_argument("--modelscope-dir", help="damo-vilab/text-to-video-ms-1.7b snapshot")
    parser.add_argument("--vid2vid-dir", help="damo/Video-to-Video v1.1.0 snapshot")
    parser.add_argument("--random-weights", action="store_true", help="allow --config full without the official "
                        "weights: random full-size networks + the tiny tokenizer, FOR BENCHMARKS ONLY")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32", help="stored weight dtype")
    parser.add_argument("--device", default="cpu", help="device for the export checks (cpu, cuda, cuda:N)")
    parser.add_argument("--no-verify", action="store_true", help="skip the eager-vs-TorchScript forward checks")
    parser.add_argument("--allow-new-ops", action="store_true", help="do not fail on ops missing in libtorch 1.13")
    parser.add_argument("--name", help="model name in the manifest (default: the config name)")
    parser.add_argument("--defaults", help="JSON file deep-merged into the manifest's pipeline defaults (e.g. the "
                        "steps and guidance a trained tiny model was tuned with)")
    parser.add_argument("--prediction-type", choices=["epsilon", "v_prediction", "sample"],
                        help="what the stage-1/2 UNets predict (default: the checkpoint's, epsilon for ModelScope)")
    parser.add_argument("--attention", choices=["auto", "math", "sdpa"], default="auto",
                        help="attention kernels in the exported graphs: sdpa = F.scaled_dot_product_attention (fused "
                        "on CUDA; the files then need libtorch >= 2.0), math = matmul + softmax (libtorch 1.13); "
                        "auto = sdpa when this torch has it (default)")
    parser.add_argument("--prompt-words", choices=["core", "full"], default=None,
                        help="write the words of the synthetic world's captions (models/world.py: the core world the "
                        "default model is trained on, or the full one) as the manifest's prompt_words, so the "
                        "library warns about prompt words the model never saw (default: none, open vocabulary)")
    parser.add_argument("--write-op-list", action="store_true", help="write models/libtorch_1_13_ops.txt and exit")
    args = parser.parse_args(argv)
    if argv is None:
        _reexec_with_fixed_hash_seed(sys.argv[1:])
    if args.write_op_list:
        print(f"{write_libtorch_ops_file()} operators")
        return 0
    if not args.out:
        parser.error("--out is required")
    try:
        export_directory(args.out, args.config, args.seed, args.streamingt2v_ckpt, args.modelscope_dir,
                         args.vid2vid_dir, args.dtype, args.device, not args.no_verify, args.allow_new_ops,
                         weights_file=args.weights, name=args.name,
                         defaults_override=_read_json(args.defaults) if args.defaults else None,
                         prediction_type=args.prediction_type, random_weights=args.random_weights,
                         attention=args.attention,
                         prompt_words=None if args.prompt_words is None else
                         (world.CORE_WORDS if args.prompt_words == "core" else world.WORDS))
    except (ExportError, FileNotFoundError, RuntimeError) as err:
        print(f"export failed: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
