"""BLiMP PLL scoring speed: sasbert.measure.blimp.scoring.PLLScorer against minicons on the same checkpoint and pairs.

    python benchmarks/blimp_speed.py [--layers 4 --hidden 128 --pairs-per-paradigm 3 ...]

Builds a random tiny BERT with the 30,522-piece bert-base-uncased vocabulary in a temp dir (nothing
is downloaded), scores a stratified BLiMP sample with both scorers in this one process, checks that
the PLLs agree (max |diff| <= --tol) and that the decisions are identical, prints a table, and ends
with one line holding the headline ratio: ``speedup over minicons: N.Nx``. Exits 1 on a mismatch.
Model loading is not timed; each scorer gets one untimed warm-up call.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(ROOT / "resources" / "blimp"))
    ap.add_argument("--vocab", default=str(ROOT / "resources" / "tokenizer" / "bert-base-uncased-vocab.txt"))
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--pairs-per-paradigm", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variant", default="original", choices=["original", "within_word_l2r"])
    ap.add_argument("--batch-size", type=int, default=256, help="our masked copies per forward")
    ap.add_argument("--minicons-batch", type=int, default=32, help="sentences per minicons sequence_score call")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (both scorers)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (both scorers)")
    ap.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args(argv)

    import torch
    from minicons import scorer as mscorer
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast, PreTrainedTokenizerBase

    if not hasattr(PreTrainedTokenizerBase, "batch_encode_plus"):
        # minicons 0.3.39 calls batch_encode_plus, which transformers 5 removed; it was __call__ on
        # a list of texts, so forwarding leaves minicons' arithmetic as it is (as in tests/conftest.py)
        def batch_encode_plus(self, batch_text_or_text_pairs, **kwargs):
            return self(batch_text_or_text_pairs, **kwargs)

        PreTrainedTokenizerBase.batch_encode_plus = batch_encode_plus

    from sasbert.data import blimp_pairs
    from sasbert.measure.blimp import scoring as blimp_scoring

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    tmp = tempfile.TemporaryDirectory()
    ckpt = Path(tmp.name) / "step-0000000"
    tok = BertTokenizerFast(vocab=args.vocab)
    cfg = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        intermediate_size=4 * args.hidden,
        initializer_range=0.1,
    )
    BertForMaskedLM(cfg).save_pretrained(ckpt)
    tok.save_pretrained(ckpt)

    pairs = blimp_pairs.subset_pairs(blimp_pairs.load_blimp(args.data_dir), args.pairs_per_paradigm, args.seed)
    n = len(pairs)
    sents = pairs.sentence_good.tolist() + pairs.sentence_bad.tolist()

    ours = blimp_scoring.PLLScorer.from_pretrained(ckpt, device=args.device, batch_size=args.batch_size)
    mc = mscorer.MaskedLMScorer(str(ckpt), args.device)

    def run_ours():
        return blimp_scoring.score_pairs(ours, pairs, args.variant, step=0)

    def run_minicons():
        out = []
        for i in range(0, len(sents), args.minicons_batch):
            out += mc.sequence_score(
                sents[i : i + args.minicons_batch], reduction=lambda x: x.sum(0).item(), PLL_metric=args.variant
            )
        return np.array(out)

    def sync():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    ours.score(sents[:8], args.variant)  # warm-up
    mc.sequence_score(sents[:8], reduction=lambda x: x.sum(0).item(), PLL_metric=args.variant)
    sync()
    t0 = time.perf_counter()
    table = run_ours()
    sync()
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    theirs = run_minicons()
    sync()
    t_mc = time.perf_counter() - t0

    mine = np.concatenate([table.pll_good.to_numpy(), table.pll_bad.to_numpy()])
    max_diff = float(np.abs(mine - theirs).max())
    same_decisions = bool((table.correct.to_numpy() == (theirs[:n] > theirs[n:])).all())
    ok = max_diff <= args.tol and same_decisions

    n_pieces = sum(len(x) - 2 for x in tok(sents)["input_ids"])
    print(
        f"model: BERT {args.layers} layers x {args.heads} heads x {args.hidden} hidden, "
        f"vocab {tok.vocab_size}; device {args.device}, {args.threads} thread(s); "
        f"variant {args.variant}"
    )
    print(
        f"data: {n} pairs ({args.pairs_per_paradigm} per paradigm, "
        f"{pairs.UID.nunique()} paradigms), {len(sents)} sentences, {n_pieces} scored pieces"
    )
    print()
    print(f"{'scorer':<34}{'seconds':>10}{'pairs/s':>12}")
    print(f"{'minicons 0.3.39 (batch ' + str(args.minicons_batch) + ' sent.)':<34}{t_mc:>10.2f}{n / t_mc:>12.1f}")
    print(
        f"{'sasbert.measure.blimp (batch ' + str(args.batch_size) + ' copies)':<34}{t_ours:>10.2f}{n / t_ours:>12.1f}"
    )
    print()
    print(
        f"max |PLL diff| {max_diff:.2e} (tol {args.tol:g}); decisions identical: "
        f"{same_decisions}; accuracy {table.correct.mean():.4f}"
    )
    if not ok:
        print("MISMATCH between the scorers", file=sys.stderr)
    print(f"speedup over minicons: {t_mc / t_ours:.1f}x")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
