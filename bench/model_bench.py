"""The local model server's throughput on one core and on all of them.

Started by `make bench` after the extension's runs (bench/run.sh): embeds the abstracts of a
generated sample (doctrove-sample) through POST /v1/embeddings in requests of 64 inputs, with
the server set up three ways, and prints texts and tokens per second:
  - one thread: one pass at a time, one thread per matrix product;
  - threads inside products: one pass at a time, each product split across all cores;
  - parallel passes (the server's default): a pass per core at once, one thread each.
Standard library only.
"""

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def post(url, texts):
    body = json.dumps({"model": "all-MiniLM-L6-v2", "input": texts, "encoding_format": "base64"}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as answer:
        return json.load(answer)


def run(passes, product_threads, texts, port, per_request):
    env = dict(os.environ, RAYON_NUM_THREADS=str(product_threads))
    server = subprocess.Popen([f"{ROOT}/target/release/doctrove-model", "--listen", f"127.0.0.1:{port}",
                               "--threads", str(passes)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        banner = server.stdout.readline().strip()
        url = f"http://127.0.0.1:{port}/v1/embeddings"
        post(url, texts[:8])  # warm up
        tokens, started = 0, time.monotonic()
        for i in range(0, len(texts), per_request):
            tokens += post(url, texts[i:i + per_request])["usage"]["prompt_tokens"]
        seconds = time.monotonic() - started
    finally:
        server.terminate()
        server.wait()
    return {"banner": banner, "texts": len(texts), "tokens": tokens, "seconds": round(seconds, 2),
            "texts_per_s": round(len(texts) / seconds, 1), "tokens_per_s": round(tokens / seconds)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument("--per-request", type=int, default=64)
    parser.add_argument("--port", type=int, default=18190)
    args = parser.parse_args()
    sample = subprocess.run([f"{ROOT}/target/release/doctrove-sample", "--count", str(args.texts), "--seed", "3"],
                            check=True, capture_output=True, text=True).stdout.splitlines()
    texts = [f"{r['title']}\n\n{r['abstract'].strip()}" for r in map(json.loads, sample)]
    cores = os.cpu_count()
    results = {}
    for label, passes, product_threads in (("one thread", 1, 1), ("threads inside products", 1, cores),
                                           ("parallel passes", cores, 1)):
        results[label] = run(passes, product_threads, texts, args.port, args.per_request)
        r = results[label]
        print(f"local model, {label:23}: {r['texts_per_s']:6.1f} texts/s, {r['tokens_per_s']:6} tokens/s "
              f"({r['texts']} texts, {r['tokens']} tokens, {r['seconds']} s)")
    speedup = results["parallel passes"]["texts_per_s"] / results["one thread"]["texts_per_s"]
    print(f"local model: the server's default (parallel passes) is {speedup:.2f}x one thread on {cores} cores")
    results["speedup"] = round(speedup, 2)
    with open(f"{ROOT}/bench/results/model.json", "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
