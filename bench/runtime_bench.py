"""The local model server side by side with ONNX Runtime and sentence-transformers, for each
model `make deps` installs (all-MiniLM-L6-v2, all-mpnet-base-v2), on short and abstract-length
texts (the same texts for every runtime): texts per second; the multiply-add rate each reaches
as a fraction of the cores' peak at its precision, measured by tight loops on every core
(`doctrove-model --measure-peak`: float32 FMA; bfloat16 tile products on AMX, or AVX-512 BF16
dot products, for the bf16 run; VNNI's 8-bit dot products, or AVX2's `vpmaddwd` on words where
the CPU has no VNNI, for the int8 runs), not read
from a datasheet; and each one's lowest cosine to sentence-transformers' vectors. The server at
float32, bf16 and int8 (each skipped where the CPU lacks its instructions), one client sending
requests of 64; ONNX Runtime at fp32 and at its dynamic
int8, the model exported here by torch.onnx (bench/reference_ort.py); sentence-transformers on
PyTorch (bench/reference_st.py); all on every core. A text's work is counted from its own tokens
(the runtimes that pad a batch to its longest text do more, uncounted). Run by `make bench`
after model_bench.py; writes bench/results/runtimes.json.
"""

import argparse
import json
import os
import random
import subprocess
import sys

import model_bench

ROOT = model_bench.ROOT
MODELS_DIR = os.path.dirname(model_bench.MODEL_DIR)
MODELS = ["all-MiniLM-L6-v2", "all-mpnet-base-v2"]
KINDS = ["short", "abstract-length"]
PORT = 18196
ORT_REQUIREMENTS = ["onnxruntime", "onnx", "onnxscript"]


def flops_per_text(config, tokens):
    """Multiply-adds of one text of `tokens` tokens through the encoder, times two: per layer
    the q, k, v and output projections (4 h^2 a token), the feed-forward (2 h i a token) and
    attention's two products (2 t h a token)."""
    h, i, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    return 2 * layers * tokens * (4 * h * h + 2 * h * i + 2 * tokens * h)


def peak():
    out = subprocess.run([f"{ROOT}/target/release/doctrove-model", "--measure-peak"], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def reference_python():
    """sentence-transformers' virtualenv, with ONNX Runtime added on first use; None if either
    cannot be installed here."""
    python = model_bench.reference_python()
    if python is None:
        return None
    probe = [python, "-c", "import onnxruntime, onnx"]
    if subprocess.run(probe, capture_output=True).returncode != 0:
        print(f"runtimes: installing {' '.join(ORT_REQUIREMENTS)} from PyPI into {model_bench.ST_VENV} (first run only)")
        if subprocess.run([python, "-m", "pip", "install", "-q", *ORT_REQUIREMENTS]).returncode != 0:
            return None
    return python


def server_run(folder, name, precision, texts):
    """One client sending requests of 64; None where the server refuses the precision here."""
    server = model_bench.start_server(PORT, precision, folder=folder)
    try:
        if not server.stdout.readline():
            return None  # refused: this CPU lacks the instructions
        url = f"http://127.0.0.1:{PORT}/v1/embeddings"
        model_bench.post(url, texts[:8], name)
        run, vectors = model_bench.server_run(url, texts, 1, 64, name)
    finally:
        server.terminate()
        server.wait()
    return {**run, "vectors": vectors}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=256)
    args = parser.parse_args()
    python = reference_python()
    if python is None:
        print("runtimes: sentence-transformers or ONNX Runtime cannot be installed here; skipped")
        return
    cores = peak()
    for arithmetic, found in cores.items():
        print(f"measured peak, {arithmetic}: {found['gops']} G multiply-add operations/s on {found['threads']} cores "
              f"({found['instruction_set']})")
    sample = subprocess.run([f"{ROOT}/target/release/doctrove-sample", "--count", "2000", "--seed", "3"],
                            check=True, capture_output=True, text=True).stdout.splitlines()
    sample = [json.loads(line) for line in sample]
    results = {"peak": cores, "models": {}}
    for name in MODELS:
        folder = os.path.join(MODELS_DIR, name)
        if not os.path.isdir(folder):
            print(f"runtimes: no {folder} (make deps installs it); skipped")
            continue
        with open(os.path.join(folder, "config.json")) as f:
            config = json.load(f)
        work = os.path.join(ROOT, "bench", "results", "tmp", name)
        os.makedirs(work, exist_ok=True)
        rng = random.Random(7)
        results["models"][name] = {}
        for kind in KINDS:
            texts = model_bench.texts_of(kind, sample, args.texts, rng)
            st = model_bench.reference_run(python, texts, work, folder)
            work_flops = sum(flops_per_text(config, len(ids)) for ids in st["token_ids"])
            runs = {"sentence-transformers": st}
            for precision in ("f32", "bf16", "int8"):
                run = server_run(folder, name, precision, texts)
                if run:
                    runs[f"doctrove-model {precision}"] = run
            for precision in ("fp32", "int8"):
                runs[f"ONNX Runtime {precision}"] = model_bench.reference_run(
                    python, texts, work, folder, "reference_ort.py", ("--work", work, "--precision", precision))
            rows = {}
            for runtime, run in runs.items():
                seconds = run["seconds"]
                worst = min(model_bench.cosine(a, b) for a, b in zip(run["vectors"], st["vectors"]))
                arithmetic = next((a for a in ("int8", "bf16") if runtime.endswith(a)), "f32")
                peak_gops = (cores.get(arithmetic) or cores["f32"])["gops"]
                rows[runtime] = {"texts_per_s": run["texts_per_s"],
                                 "fraction_of_peak": round(work_flops / seconds / 1e9 / peak_gops, 3),
                                 "lowest_cosine_to_st": round(worst, 5)}
            tokens = round(sum(len(ids) for ids in st["token_ids"]) / len(texts), 1)
            results["models"][name][kind] = {"tokens_per_text": tokens, "runs": rows}
            print(f"\n{name}, {kind} texts ({tokens} tokens a text, {len(texts)} texts)")
            print("| runtime | texts/s | fraction of peak | lowest cosine to sentence-transformers |\n|---|---|---|---|")
            for runtime, row in rows.items():
                print(f"| {runtime} | {row['texts_per_s']} | {row['fraction_of_peak']:.1%} | {row['lowest_cosine_to_st']} |")
            f32, ort = rows.get("doctrove-model f32"), rows["ONNX Runtime fp32"]
            fastest = max((r for k, r in rows.items() if k.startswith("doctrove-model") and r["lowest_cosine_to_st"] >= 0.999),
                          key=lambda r: r["texts_per_s"], default=None)
            if f32 and fastest:
                ort_int8 = rows["ONNX Runtime int8"]
                print(f"float32 {f32['texts_per_s'] / ort['texts_per_s']:.2f}x ONNX Runtime fp32; fastest at cosine >= 0.999 "
                      f"{fastest['texts_per_s'] / ort_int8['texts_per_s']:.2f}x ONNX Runtime int8 "
                      f"(whose lowest cosine is {ort_int8['lowest_cosine_to_st']})")
    with open(os.path.join(ROOT, "bench", "results", "runtimes.json"), "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
