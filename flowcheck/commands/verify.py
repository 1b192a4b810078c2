"""`flowcheck verify MODEL`: the adapter contract on a real checkpoint, on one sample of a dataset.

Loads the checkpoint the way the suites do (same option names and parsing as the pytest
options), encodes one sample, runs every check of `flowcheck.analyses.contract`, prints the
prompt with its spans marked and a verdict line per check. Exit code 0 when the contract holds,
1 when a check failed, 2 when the model or the data cannot be loaded at all.
"""

from __future__ import annotations

import argparse
import json
import sys

from flowcheck.options import SPECS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="registry name, hub id or local path (NAME@family forces one)")
    parser.add_argument(
        "--flow-data",
        dest="data",
        type=SPECS["data"].parse,
        default={"synthetic": None},
        metavar="NAME[=PATH]",
        help="dataset to take the sample from: synthetic (default), tvbench=PATH, tomato=PATH, folder=PATH",
    )
    parser.add_argument("--task", help="task of the sample (default: the dataset's first task)")
    parser.add_argument("--sample", dest="sample_id", help="sample id (default: the task's first sample)")
    parser.add_argument("--flow-dtype", dest="dtype", type=SPECS["dtype"].parse, default="float32")
    parser.add_argument("--flow-device", dest="device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    parser.add_argument("--frames", type=int, default=8, help="frames per video (default 8, the paper's)")
    parser.add_argument(
        "--flow-trust-remote-code", dest="trust_remote_code", action="store_true", help="allow the checkpoint's code"
    )
    parser.add_argument(
        "--flow-cache",
        dest="cache_dir",
        type=SPECS["cache_dir"].parse,
        default=SPECS["cache_dir"].default,
        metavar="DIR",
        help="result cache: a verification already there is read, not recomputed (default .flowcheck-cache)",
    )
    parser.add_argument(
        "--flow-system-prompt",
        dest="system_mode",
        type=SPECS["system_prompt"].parse,
        default=SPECS["system_prompt"].default,
        metavar="MODE",
        help=SPECS["system_prompt"].argparse_help,
    )
    parser.add_argument(
        "--flow-data-dir",
        dest="data_dir",
        type=SPECS["data_dir"].parse,
        default=None,
        metavar="DIR",
        help=SPECS["data_dir"].argparse_help,
    )
    parser.add_argument("--no-cache", action="store_true", help="always recompute (and do not store)")
    parser.add_argument("--json", action="store_true", help="print the verification as JSON")


def run(args: argparse.Namespace) -> int:
    from flowcheck.analyses.contract import choose_sample, verify
    from flowcheck.cache import ResultCache
    from flowcheck.data.frames import FrameCache, FrameRequest
    from flowcheck.data.registry import load_dataset
    from flowcheck.models.handle import ModelHandle

    if len(args.data) != 1:
        print("flowcheck verify: give one --flow-data dataset", file=sys.stderr)
        return 2
    ((dataset, root),) = args.data.items()
    try:
        samples, _ = load_dataset(dataset, root, [args.task] if args.task else None, data_dir=args.data_dir)
        sample = choose_sample(samples, args.task, args.sample_id)
        frames = FrameCache(max_items=1).get(FrameRequest.of(sample, args.frames))
        model = ModelHandle(
            args.model,
            dtype=args.dtype,
            device=args.device,
            num_frames=args.frames,
            trust_remote_code=args.trust_remote_code,
            system_mode=args.system_mode,
        )
    except (LookupError, OSError, ValueError, RuntimeError) as err:
        print(f"flowcheck verify: {err}", file=sys.stderr)
        return 2
    cache = None if args.no_cache else ResultCache(args.cache_dir)
    try:
        result = verify(model, sample, frames, cache=cache)
    except (OSError, ValueError, RuntimeError) as err:  # the checkpoint cannot be loaded or the sample not encoded
        print(f"flowcheck verify: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return 0 if result.ok else 1
    print(
        f"model   {result.model} ({result.family}, {result.dtype} on {result.device}, fingerprint {result.fingerprint})"
    )
    print(
        f"sample  {result.sample_id} ({dataset}), {args.frames} frames" + ("; from the cache" if result.cached else "")
    )
    if result.prompt_notes:
        print("prompt  " + "; ".join(f"{k}: {v}" for k, v in result.prompt_notes.items()))
    print("\nprompt sent to the model, spans marked [name> ... <name]:\n")
    print(result.prompt)
    print()
    for line in result.lines():
        print(line)
    print(f"\n{result.summary()}")
    return 0 if result.ok else 1
