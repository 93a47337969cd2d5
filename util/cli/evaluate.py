"""evaluate.py's command: score a checkpoint on a test split, or re-score a features file; print, and write
what the flags ask for (features, results, CMC curve, ranked pictures)."""
import time

from models import load_model, to_channels_last
from util.data.loaders import ClipConfig, decoder_for, read_database, read_rows
from util.distributed import cleanup, init_distributed
from util.errors import DataError, ReIDError
from util.evaluation.attributes import ATTRIBUTES, load_attributes, saved_attributes
from util.evaluation.extract import extract_features, gather_features, make_eval_loader
from util.evaluation.features_file import FeaturesFile
from util.evaluation.metrics import format_protocols, format_result
from util.evaluation.scoring import chance_level, rerank_score, score_all, write_results
from util.io import check_writable


def clip_config(args):
    """The test clips the flags ask for (--S, --height, --width, --test_sampling and the decoder flags)."""
    return ClipConfig(args.S, args.height, args.width, args.test_sampling,
                      decoder_for(args.decode_on_device, args.resize_on_device), args.test_stride)


def attribute_paths(args):
    """{'clothes': --clothes_info, 'location': --location_info, 'scale': --scale_info} (None where not given)."""
    return {name: getattr(args, f'{name}_info', None) for name in ATTRIBUTES}


def feature_attributes(args, saved):
    """The attributes a features file was saved with, replaced by those given on the command line; an attribute
    file needs the file's gallery index (the clothes-changing benchmarks never rank the query against itself)."""
    given = load_attributes(attribute_paths(args), len(saved.labels), args.features)
    if given and saved.gallery_idx is None:
        flags = ', '.join(f'--{k}_info' for k in given)
        raise DataError(f'--features {args.features}: has no gallery_idx, which {flags} needs (save the features '
                        f'from a database with gallery_IDX.npy, or give --gallery_info)')
    return dict(saved_attributes(saved.extra, len(saved.labels), f'--features {args.features}'), **given)


def check_outputs(args):
    """Refuse an unwritable output path before any feature is extracted."""
    for flag, path in (('--save_features', args.save_features), ('--results', args.results),
                       ('--cmc_plot', args.cmc_plot)):
        if path is not None:
            check_writable(path, flag)
    if args.visualize_ranks is not None:
        check_writable(args.visualize_ranks, '--visualize_ranks', directory=True)


def check_rerank(args, n_gallery, n_query):
    """--rerank_k1 must leave gallery items outside the neighbourhoods, --rerank_k2 fit in the probe+gallery
    set (the other bounds: util.cli.options)."""
    if not args.rerank:
        return
    if args.rerank_k1 >= n_gallery:
        raise ReIDError(f'--rerank_k1 {args.rerank_k1} must be smaller than the gallery size ({n_gallery} '
                        f'tracklets)')
    if args.rerank_k2 > n_gallery + n_query:
        raise ReIDError(f'--rerank_k2 {args.rerank_k2} must be at most the {n_gallery + n_query} probe + gallery '
                        f'tracklets')


def evaluate(args):
    """evaluate.py: score a checkpoint on the test split, or re-score saved features."""
    check_outputs(args)
    if args.features is not None:
        saved = FeaturesFile.read(args.features)
        if args.gallery_info is not None:  # a gallery given on the command line replaces the file's
            saved.gallery_idx = read_rows(args.gallery_info, 'gallery', len(saved.labels), args.features)
        n_gallery = len(saved.labels) if saved.gallery_idx is None else len(saved.gallery_idx)
        check_rerank(args, n_gallery, len(saved.query_idx))
        db = None
        if args.visualize_ranks is not None:
            if args.test_txt is None or args.test_info is None:
                raise DataError('--visualize_ranks with --features needs --test_txt and --test_info (the frames)')
            db = read_database(args.test_txt, args.test_info)
            if len(db.info) != len(saved.labels):
                raise DataError(f'--features {args.features}: {len(saved.labels)} tracklets, but '
                                f'{args.test_info} has {len(db.info)} rows')
        attributes = feature_attributes(args, saved)
        print(f'Scoring {len(saved.features)} saved features from {args.features}')
        settings = dict(test_sampling=saved.test_sampling, features=args.features, checkpoint=None)
        # saved features are scored on the CPU unless --device cuda asks for the GPU
        device = init_distributed('cuda').device if args.device == 'cuda' else None
        report(args, saved.features, saved.labels, saved.cams, saved.query_idx, saved.gallery_idx,
               db, settings, source=f'--features {args.features}', device=device, attributes=attributes)
        return 0

    ctx = init_distributed(args.device)
    try:
        return _evaluate_checkpoint(args, ctx)
    finally:
        cleanup(ctx)


def _evaluate_checkpoint(args, ctx):
    log = print if ctx.is_main else (lambda *a, **k: None)

    db = read_database(args.test_txt, args.test_info, args.query_info, args.gallery_info)
    check_rerank(args, len(db.info) if db.gallery_idx is None else len(db.gallery_idx), len(db.query_idx))
    attributes = load_attributes(attribute_paths(args), len(db.info), args.test_info)
    loader = make_eval_loader(db, clip_config(args), args.batch_size, args.num_workers, ctx)
    model, notes = load_model(args.load_ckpt, args.model_type, non_layers=args.non_layers, stripes=args.stripes,
                              temporal=args.temporal, stride=args.stride, height=args.height, S=args.S,
                              inputs=vars(args))
    for note in notes:  # e.g. another S than in training
        log(note)
    num_class = model.classifier.out_features
    model.to(ctx.device)
    if args.channels_last:
        to_channels_last(model)
    gallery = 'every test tracklet' if db.gallery_idx is None else f'{len(db.gallery_idx)} gallery tracklets'
    log(f'Loaded {args.load_ckpt} ({args.model_type}, {num_class} training identities); '
        f'{len(db.info)} test tracklets, {len(db.query_idx)} queries against {gallery}, S={args.S}, '
        f'{args.test_sampling} sampling, device {ctx.device}')

    start = time.perf_counter()
    feats, labels, cams = extract_features(model, loader, args.S, ctx.device, args.temporal,
                                           frame_level=model.frame_level, amp=args.amp,
                                           channels_last=args.channels_last, progress=ctx.is_main)
    feats, labels, cams = gather_features(feats, labels, cams, ctx)
    if not ctx.is_main:
        return 0
    seconds = time.perf_counter() - start
    clips = len(loader.dataset)  # every rank's loader indexes all clips; each loads its shard
    log(f'Features of {len(feats)} tracklets from {clips} clips of {args.S} frames in {seconds:.1f} s '
        f'({clips / seconds:.1f} clips/s, {clips * args.S / seconds:.0f} frames/s)')
    if args.save_features is not None:
        FeaturesFile(feats.numpy(), labels.numpy(), cams.numpy(), db.query_idx, db.gallery_idx,
                     test_sampling=args.test_sampling, extra=attributes).write(args.save_features)
        log(f'Saved features to {args.save_features}')
    settings = dict(test_sampling=args.test_sampling, features=None, checkpoint=args.load_ckpt)
    report(args, feats.numpy(), labels.numpy(), cams.numpy(), db.query_idx, db.gallery_idx, db, settings,
           source=f'features of {args.load_ckpt}', device=ctx.device, attributes=attributes)
    return 0


def report(args, features, labels, cams, query_idx, gallery_idx, db, settings, source, device=None, attributes=None):
    """Score, print, and write what was asked: attribute protocols, re-ranked scores, chance level, --results,
    --cmc_plot, ranked pictures."""
    protocols = score_all(features, labels, cams, query_idx, args.rank_size, gallery_idx, source=source,
                          device=device, ap_rule=args.ap_rule, attributes=attributes)
    result = protocols['overall']
    settings = dict(settings, ap_rule=args.ap_rule, test_stride=args.test_stride,
                    protocols=[k for k in protocols if k != 'overall'])
    reranked = None
    if args.rerank:
        reranked = rerank_score(features, labels, cams, query_idx, gallery_idx, args.rerank_k1, args.rerank_k2,
                                args.rerank_lambda, args.rank_size, device, ap_rule=args.ap_rule)
        print(format_result(result))
        print(f'With k-reciprocal re-ranking (k1 {args.rerank_k1}, k2 {args.rerank_k2}, '
              f'lambda {args.rerank_lambda}):')
        print(format_result(reranked))
    else:
        print(format_result(result))
    if len(protocols) > 1:
        print(format_protocols(protocols))
    if args.chance_level:
        expected, rank1, mAP = chance_level(labels, cams, query_idx, args.rank_size, gallery_idx=gallery_idx)
        print(f'Chance level: rank-1 {expected:.4f} (expected for a random ranking); random features rank-1 '
              f'{rank1:.4f}, mAP {mAP:.4f} (mean of 100 draws)')
    if args.results is not None:
        n_gallery = len(labels) if gallery_idx is None else len(gallery_idx)
        settings = dict(settings, num_queries=int(len(query_idx)), num_tracklets=int(len(labels)),
                        num_gallery=int(n_gallery),
                        gallery='all test tracklets' if gallery_idx is None else 'gallery_idx',
                        gallery_info=args.gallery_info, rank_size=args.rank_size,
                        rerank=dict(k1=args.rerank_k1, k2=args.rerank_k2, lambda_value=args.rerank_lambda)
                        if args.rerank else None)
        write_results(args.results, result, settings, reranked, protocols)
        print(f'Results written to {args.results}')
    if args.cmc_plot is not None:
        from util.pictures.curves import plot_cmc  # matplotlib is only needed here
        curves = {'cosine distance': result}
        if reranked is not None:
            curves['k-reciprocal re-ranking'] = reranked
        plot_cmc(args.cmc_plot, curves)
        print(f'CMC curve written to {args.cmc_plot}')
    if args.visualize_ranks is not None:
        visualize_ranks(args, features, labels, cams, query_idx, db, gallery_idx)


def visualize_ranks(args, features, labels, cams, query_idx, db, gallery_idx=None):
    from util.pictures.ranks import save_ranked_results  # matplotlib is only needed here
    drawn = save_ranked_results(args.visualize_ranks, features, labels, cams, query_idx, db.paths, db.info, args.S,
                                num_queries=args.num_queries, topk=args.topk, gallery_idx=gallery_idx)
    print(f'Ranked results of {len(drawn)} queries in {args.visualize_ranks} (index.html)')
