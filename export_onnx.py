"""Export a trained model to ONNX: uint8 RGB clips (batch, S, 3, H, W) in, (batch, 2048) eval features out.

    python export_onnx.py --load_ckpt ckpt_best.pth --model_type resnet50_NL_stripe_hr --temporal Done \
        --S 8 --height 256 --width 128 --out ste_nvan.onnx

The ImageNet normalisation (and resnet50_s1's --temporal pooling of frames) is inside the graph; the batch
axis is dynamic. The file is then run with onnxruntime on the CPU and compared with PyTorch (--no_check skips).
"""
import sys

from util.cli.options import parse_args, run_main
from util.cli.tools import embedder_from_args
from util.io import atomic_save, check_writable


def main(argv=None):
    args = parse_args('export', argv)
    check_writable(args.out, '--out')
    from models.export import check_onnx, export_onnx
    args.device = 'cpu'  # the exported graph is device independent; tracing on the CPU
    model = embedder_from_args(args).model
    atomic_save(model, args.out, write=lambda m, f: export_onnx(m, f, args.S, args.height, args.width, args.opset))
    print(f'Wrote {args.out}: clips uint8 (batch, {args.S}, 3, {args.height}, {args.width}) -> features float32 '
          f'(batch, 2048), opset {args.opset}')
    if not args.no_check:
        diff = check_onnx(args.out, model, args.S, args.height, args.width)
        print(f'onnxruntime (CPU) vs PyTorch on 3 random clips: max relative difference {diff:.2e}')
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
