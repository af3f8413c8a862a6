"""ONNX Runtime embedding texts with a sentence-transformers model folder, timed: the runtime
fastembed and Infinity use, side by side with the local model server (bench/runtime_bench.py).
The folder's encoder is exported by torch.onnx (dynamic batch and sequence length), then
quantised by ONNX Runtime's own dynamic int8 (weights per channel at export, activations per
tensor at run time); both run with the folder's pooling and normalisation, batches of 64 padded
to their longest text, as sentence-transformers' ONNX backend does. Runs in the
sentence-transformers virtualenv. Usage:
reference_ort.py MODEL_DIR TEXTS.json OUT.json --work DIR [--threads N] [--precision fp32|int8]
"""

import argparse
import json
import os
import time

import numpy as np
import onnxruntime
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from sentence_transformers import SentenceTransformer


def export(model_dir, work):
    """The encoder as ONNX (once per folder): input ids and attention mask in, token vectors out."""
    path = os.path.join(work, "model.onnx")
    if os.path.exists(path):
        return path
    class Encoder(torch.nn.Module):
        """The folder's encoder with two named inputs and its token vectors out."""

        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    encoder = Encoder(SentenceTransformer(model_dir, device="cpu")[0].auto_model.eval())
    ids = torch.ones((2, 16), dtype=torch.long)
    with torch.no_grad():
        torch.onnx.export(encoder, (ids, torch.ones_like(ids)), path, input_names=["input_ids", "attention_mask"],
                          output_names=["last_hidden_state"], opset_version=17, dynamo=False,
                          dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
                                        "last_hidden_state": {0: "batch", 1: "tokens"}})
    return path


def quantised(path):
    out = path.replace(".onnx", ".int8.onnx")
    if not os.path.exists(out):
        quantize_dynamic(path, out, weight_type=QuantType.QInt8, per_channel=True)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("texts")
    parser.add_argument("out")
    parser.add_argument("--work", required=True)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--precision", default="fp32", choices=["fp32", "int8"])
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    st = SentenceTransformer(args.model_dir, device="cpu")
    tokenizer, limit = st.tokenizer, st.max_seq_length
    normalise = any(type(m).__name__ == "Normalize" for m in st)
    cls = str(getattr(st[1], "pooling_mode", "mean")) == "cls"
    path = export(args.model_dir, args.work)
    if args.precision == "int8":
        path = quantised(path)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    with open(args.texts) as f:
        texts = json.load(f)

    def embed(batch):
        encoded = tokenizer(batch, truncation=True, max_length=limit, padding=True, return_tensors="np")
        mask = encoded["attention_mask"].astype(np.int64)
        hidden = session.run(None, {"input_ids": encoded["input_ids"].astype(np.int64), "attention_mask": mask})[0]
        if cls:
            pooled = hidden[:, 0]
        else:
            pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        if normalise:
            pooled = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
        return pooled, int(mask.sum())

    embed(texts[:8])  # warm up
    started = time.monotonic()
    vectors, tokens = [], 0
    for i in range(0, len(texts), args.batch):
        pooled, count = embed(texts[i:i + args.batch])
        vectors.extend(pooled.tolist())
        tokens += count
    seconds = time.monotonic() - started
    with open(args.out, "w") as f:
        json.dump({"texts_per_s": round(len(texts) / seconds, 1), "tokens_per_s": round(tokens / seconds),
                   "seconds": round(seconds, 2), "tokens": tokens, "onnxruntime": onnxruntime.__version__,
                   "vectors": vectors}, f)


if __name__ == "__main__":
    main()
