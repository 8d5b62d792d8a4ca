"""Groundwork for issue #6: the text encoder's ONNX variants on this CPU, side by side in one run.

    python -m benchmarks.encoder_variants --encoder build/encoder/model.onnx --shop build/default/shop

Variants of the exported MiniLM (``make build`` makes it):

* fp32, the reference;
* ``fused``: ONNX Runtime's transformer fusion (attention, layer norm, GELU);
* ``int8``: dynamic INT8 weight quantization;
* ``fused+int8``: both.

Measured for each: file size, latency of one 8-token query (2 intra-op threads, the served setting),
and the embedding cosine to fp32 on real titles. Not a build step and not a gate: issue #6 turns
these into measured build variants with a quality gate.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def make_variants(src: Path, out: Path) -> dict[str, Path]:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer

    out.mkdir(parents=True, exist_ok=True)
    fused = optimizer.optimize_model(str(src), model_type="bert", num_heads=12, hidden_size=384, opt_level=1)
    fused.save_model_to_file(str(out / "fused.onnx"))
    quantize_dynamic(str(src), str(out / "int8.onnx"), weight_type=QuantType.QInt8)
    # The fused graph has contrib ops that shape inference cannot type: tell the quantizer they are float.
    quantize_dynamic(str(out / "fused.onnx"), str(out / "fused_int8.onnx"), weight_type=QuantType.QInt8,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return {"fp32": src, "fused": out / "fused.onnx", "int8": out / "int8.onnx", "fused+int8": out / "fused_int8.onnx"}


def measure(paths: dict[str, Path], titles: list[str], query: str, repeats: int = 300) -> list[dict]:
    from builders.text_encoder import pretrained_dir
    from runtime.text import TextTokenizer
    from server.ort_runner import make_session

    tok = TextTokenizer(pretrained_dir() / "tokenizer.json")
    ids, mask = tok.encode(titles)
    q_ids, q_mask = tok.encode_one(query)
    rows, ref = [], None
    for name, path in paths.items():
        session = make_session(str(path), intra_op_threads=2)
        emb = np.concatenate([session.run(None, {"input_ids": ids[i:i + 50], "attention_mask": mask[i:i + 50]})[0]
                              for i in range(0, len(titles), 50)])
        ref = emb if ref is None else ref
        cos = (emb * ref).sum(1) / np.linalg.norm(emb, axis=1) / np.linalg.norm(ref, axis=1)
        feed = {"input_ids": q_ids, "attention_mask": q_mask}
        for _ in range(20):
            session.run(None, feed)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            session.run(None, feed)
            times.append((time.perf_counter() - t0) * 1e3)
        rows.append({"variant": name, "mb": path.stat().st_size / 1e6, "p50_ms": float(np.median(times)),
                     "min_cos": float(cos.min()), "mean_cos": float(cos.mean())})
    base = rows[0]["p50_ms"]
    for r in rows:
        r["speedup"] = base / r["p50_ms"]
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--encoder", type=Path, default=Path("build/encoder/model.onnx"))
    p.add_argument("--shop", type=Path, default=Path("build/default/shop"))
    p.add_argument("--out", type=Path, default=Path("build/encoder_variants"))
    p.add_argument("--titles", type=int, default=300)
    args = p.parse_args(argv)
    titles = json.loads((args.shop / "shop_text.json").read_text())["item_titles"][: args.titles]
    rows = measure(make_variants(args.encoder, args.out), titles, "helix red running shoes")
    print("| variant | size | query p50 (8 tokens) | speed-up vs fp32 | min cosine | mean cosine |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['mb']:.1f} MB | {r['p50_ms']:.2f} ms | {r['speedup']:.2f}x | "
              f"{r['min_cos']:.4f} | {r['mean_cos']:.5f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
