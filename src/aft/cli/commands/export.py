"""`aft export`: write a trained student as an ONNX file (inputs: preprocessed tensors; outputs: logits, features).

Example:
    aft export --model runs/digits-aft --onnx student.onnx
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("export", help="export a trained student to ONNX",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", "-m", required=True, help="run folder (student.json + student.safetensors)")
    p.add_argument("--onnx", required=True, metavar="OUT.onnx", help="ONNX file to write")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset version (default 17)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="skip the onnx.checker / onnxruntime comparison with PyTorch")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="let a transformer student import its model folder's own Python code (off: nothing from "
                        "the run folder executes; a student.json asking for it is refused)")
    p.set_defaults(func=handler)
    return p


def handler(args: argparse.Namespace) -> int:
    from aft.errors import ConfigError
    from aft.export import export_onnx

    if args.opset < 7:
        raise ConfigError(f"--opset {args.opset} is too old; use 17 (the default) or another opset >= 7")
    path = export_onnx(args.model, args.onnx, opset=args.opset, overwrite=args.overwrite, verify=args.verify,
                       trust_remote_code=args.trust_remote_code is True)
    print(path)
    return 0
