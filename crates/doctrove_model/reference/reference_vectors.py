"""Reference vectors for the local model server, computed independently of it.

A second implementation of the sentence-transformers pipeline of all-MiniLM-L6-v2, written
from the model's published architecture with numpy only: BERT's uncased WordPiece tokenizer
(from vocab.txt), the 6-layer encoder in float64 (from model.safetensors), mean pooling over
the attention mask (and, for the server's CLS pooling, the first token's vector), L2
normalisation, and the 256-token limit of sentence_bert_config.json.
It shares no code with the Rust server (candle + the tokenizers crate), so agreement between
the two checks both.

    python reference_vectors.py MODEL_DIR OUT.json      # write reference vectors
    python reference_vectors.py MODEL_DIR OUT.json --check FIXTURE.json
                                                         # and compare with a committed fixture
"""

import json
import math
import struct
import sys
import unicodedata

import numpy as np

# Texts that exercise the tokenizer and the encoder: plain prose, punctuation, accents (stripped
# by the uncased model), digits, a word split into word pieces, an unknown character, and one
# text far over the 256-token limit (it must be cut, not rejected).
TEXTS = [
    "The weather is lovely today.",
    "It's so sunny outside!",
    "He drove to the stadium.",
    "hello world",
    "Dark matter halos shape the rotation curves of spiral galaxies.",
    "Café society: naïve Bayes classifiers, résumé parsing and the Zürich model (2019).",
    "Protein folding intermediates observed by single-molecule FRET at 4.2 K? Unbelievable!!",
    "Quantum chromodynamics \u2603 on the lattice",
    " ".join(["We study convergence of stochastic gradient descent on non-convex objectives."] * 40),
]

MAX_TOKENS = 256


def load_safetensors(path):
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
        data = f.read()
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] != "F32":
            continue
        start, end = info["data_offsets"]
        tensors[name] = np.frombuffer(data[start:end], dtype="<f4").reshape(info["shape"]).astype(np.float64)
    return tensors


class WordPiece:
    """BERT's uncased tokenizer: clean, split Chinese characters, lower-case, strip accents,
    split on whitespace and punctuation, then greedy longest-match word pieces."""

    def __init__(self, vocab_path):
        with open(vocab_path, encoding="utf-8") as f:
            self.vocab = {line.rstrip("\n"): i for i, line in enumerate(f)}

    @staticmethod
    def is_punctuation(ch):
        cp = ord(ch)
        if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
            return True
        return unicodedata.category(ch).startswith("P")

    @staticmethod
    def is_chinese(cp):
        return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
                or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
                or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)

    def basic_tokens(self, text):
        cleaned = []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD or (unicodedata.category(ch).startswith("C") and ch not in "\t\n\r"):
                continue
            if ch in " \t\n\r" or unicodedata.category(ch) == "Zs":
                cleaned.append(" ")
            elif self.is_chinese(cp):
                cleaned.append(f" {ch} ")
            else:
                cleaned.append(ch)
        text = "".join(cleaned).lower()
        text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
        tokens = []
        for word in text.split():
            current = ""
            for ch in word:
                if self.is_punctuation(ch):
                    if current:
                        tokens.append(current)
                    tokens.append(ch)
                    current = ""
                else:
                    current += ch
            if current:
                tokens.append(current)
        return tokens

    def word_pieces(self, word):
        if len(word) > 100:
            return ["[UNK]"]
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    break
                end -= 1
            if end == start:
                return ["[UNK]"]
            pieces.append(piece)
            start = end
        return pieces

    def encode(self, text):
        pieces = [p for word in self.basic_tokens(text) for p in self.word_pieces(word)]
        pieces = pieces[: MAX_TOKENS - 2]
        return [self.vocab["[CLS]"]] + [self.vocab[p] for p in pieces] + [self.vocab["[SEP]"]]


def layer_norm(x, weight, bias, eps=1e-12):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


_erf = np.vectorize(math.erf)


def gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def linear(x, w, prefix):
    return x @ w[prefix + ".weight"].T + w[prefix + ".bias"]


def encode(ids, w, heads=12):
    n = len(ids)
    x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n] \
        + w["embeddings.token_type_embeddings.weight"][0]
    x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
    hidden = x.shape[1]
    size = hidden // heads
    layer = 0
    while f"encoder.layer.{layer}.attention.self.query.weight" in w:
        p = f"encoder.layer.{layer}."
        q = linear(x, w, p + "attention.self.query").reshape(n, heads, size).transpose(1, 0, 2)
        k = linear(x, w, p + "attention.self.key").reshape(n, heads, size).transpose(1, 0, 2)
        v = linear(x, w, p + "attention.self.value").reshape(n, heads, size).transpose(1, 0, 2)
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(size)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        scores /= scores.sum(-1, keepdims=True)
        context = (scores @ v).transpose(1, 0, 2).reshape(n, hidden)
        x = layer_norm(linear(context, w, p + "attention.output.dense") + x,
                       w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"])
        inner = gelu(linear(x, w, p + "intermediate.dense"))
        x = layer_norm(linear(inner, w, p + "output.dense") + x,
                       w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
        layer += 1
    return x


def unit(vector):
    return vector / max(np.linalg.norm(vector), 1e-12)


def main():
    if len(sys.argv) not in (3, 5) or (len(sys.argv) == 5 and sys.argv[3] != "--check"):
        sys.exit(__doc__)
    model_dir, out = sys.argv[1], sys.argv[2]
    weights = load_safetensors(f"{model_dir}/model.safetensors")
    tokenizer = WordPiece(f"{model_dir}/vocab.txt")
    token_ids = [tokenizer.encode(t) for t in TEXTS]
    hidden = [encode(ids, weights) for ids in token_ids]
    # The model's own pooling (the mean over the tokens: one text at a time, every token is
    # real), and CLS pooling (the first token's vector), each normalised.
    vectors = [unit(x.mean(0)).tolist() for x in hidden]
    cls_vectors = [unit(x[0]).tolist() for x in hidden]
    result = {"model": "sentence-transformers/all-MiniLM-L6-v2", "max_tokens": MAX_TOKENS,
              "texts": TEXTS, "token_ids": token_ids, "vectors": vectors, "cls_vectors": cls_vectors}
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f)
    print(f"reference: {len(TEXTS)} texts, token counts {[len(i) for i in token_ids]}, written to {out}")
    if len(sys.argv) == 5:
        with open(sys.argv[4], encoding="utf-8") as f:
            fixture = json.load(f)
        assert fixture["texts"] == TEXTS, "the fixture's texts differ from this script's"
        assert fixture["token_ids"] == token_ids, "the fixture's token ids differ from this script's"
        worst = min(float(np.dot(a, b)) for key, mine in (("vectors", vectors), ("cls_vectors", cls_vectors))
                    for a, b in zip(fixture[key], mine))
        assert worst > 0.999999, f"the fixture's vectors differ from this script's (cosine {worst})"
        print(f"reference: the committed fixture matches (lowest cosine {worst:.8f})")


if __name__ == "__main__":
    main()
