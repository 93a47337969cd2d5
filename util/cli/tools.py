"""The command lines of the tools that use a trained model outside a benchmark (extract_features.py, search.py,
export_onnx.py): the flags turned into a TrackletEmbedder."""
from util.evaluation.embed import TrackletEmbedder


def embedder_from_args(args):
    """A TrackletEmbedder configured by the model, clip and loading flags of a script."""
    return TrackletEmbedder(args.load_ckpt, args.model_type, non_layers=args.non_layers, stripes=args.stripes,
                            temporal=args.temporal, S=args.S, height=args.height, width=args.width,
                            test_sampling=args.test_sampling, batch_size=args.batch_size,
                            num_workers=args.num_workers, device=args.device, amp=args.amp, stride=args.stride,
                            channels_last=args.channels_last, resize_on_device=args.resize_on_device,
                            decode_on_device=args.decode_on_device, test_stride=args.test_stride)
