"""sentence-transformers on PyTorch embedding texts with a model folder (all-MiniLM-L6-v2,
all-mpnet-base-v2) as its modules.json says, timed: the reference the local model server is compared with (bench/model_bench.py) and the
source of the committed sentence-transformers fixture (crates/doctrove_model/tests/fixtures).
Runs in the bench's virtualenv. Usage: reference_st.py MODEL_DIR TEXTS.json OUT.json [--threads N]
"""

import argparse
import json
import time

import sentence_transformers
import torch
from sentence_transformers import SentenceTransformer


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("texts")
    parser.add_argument("out")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # The model's own pipeline, from its folder: the encoder with inputs cut at the folder's
    # max_seq_length, its pooling, and its Normalize module.
    model = SentenceTransformer(args.model_dir, device="cpu")
    limit = model.max_seq_length
    with open(args.texts) as f:
        texts = json.load(f)
    model.encode(texts[:8], batch_size=args.batch)  # warm up
    started = time.monotonic()
    vectors = model.encode(texts, batch_size=args.batch, convert_to_numpy=True)
    seconds = time.monotonic() - started
    token_ids = model.tokenizer(texts, truncation=True, max_length=limit)["input_ids"]
    tokens = sum(len(ids) for ids in token_ids)
    with open(args.out, "w") as f:
        json.dump({"texts": texts, "texts_per_s": round(len(texts) / seconds, 1), "tokens_per_s": round(tokens / seconds),
                   "seconds": round(seconds, 2), "tokens": tokens,
                   "versions": {"sentence-transformers": sentence_transformers.__version__, "torch": torch.__version__},
                   "token_ids": token_ids, "vectors": vectors.tolist()}, f)


if __name__ == "__main__":
    main()
