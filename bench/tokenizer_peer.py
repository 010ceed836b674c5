#!/usr/bin/env python3
"""Tokenizer speed, side by side with Hugging Face tokenizers.

    python3 bench/tokenizer_peer.py make-text OUT.txt --mb 100
    python3 bench/tokenizer_peer.py hf TOKENIZER.json[.gz] TEXT.txt

make-text writes deterministic mixed text (English-like prose, code, digits,
CJK, accented and combining letters, emoji with joiners, whitespace runs).
hf prints one-thread MB/s of tokenizers' encode over ~4 KB documents (cut at
line ends, as bench_tokenizer.c does), first pass and second pass.
"""
import gzip, json, os, random, sys, time

WORDS = ("the of and to in is was for that with as on by at from his her an be this which or had are were but not "
         "have one all their been has more when who will would there if can said its about them into time only "
         "model training data token layer attention gradient learning rate batch sequence").split()
CODE = ["def f(x):\n    return x * 2 + 1\n", "for (int i = 0; i < n; i++) { s += a[i]; }\n",
        "if err != nil {\n\treturn nil, err\n}\n", "const y = arr.map((v) => v ** 2);\n"]
OTHER = ["日本語のテキストです。", "中文文本，包含标点。", "Ünïcödé çàfé naïve résumé", "e\u0301 a\u0300 o\u0308",
         "👩‍👩‍👧‍👦 🇫🇷 👍🏽", "I'M THEY'LL we'd You've", "   \t  spaces  \r\n", "12345678901234 3.14159 1e-5",
         "<|im_start|>user\nhi<|im_end|>\n"]


def make_text(path, mb):
    rng = random.Random(1234)
    target = mb * 1_000_000
    with open(path, "w", encoding="utf-8") as f:
        n = 0
        while n < target:
            r = rng.random()
            if r < 0.75:
                s = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 30)))
                s = s[0].upper() + s[1:] + rng.choice([".", ",", "!", "?", ";"]) + ("\n" if rng.random() < 0.3 else " ")
            elif r < 0.9:
                s = rng.choice(CODE)
            else:
                s = rng.choice(OTHER) + " "
            f.write(s)
            n += len(s.encode("utf-8"))
    print(f"wrote {path}: {n / 1e6:.1f} MB")


def docs_of(text, size=4096):
    out, i = [], 0
    while i < len(text):
        j = text.find("\n", i + size)
        j = len(text) if j < 0 else j + 1
        out.append(text[i:j])
        i = j
    return out


def hf(tok_path, text_path):
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    os.environ["RAYON_NUM_THREADS"] = "1"
    from tokenizers import Tokenizer
    data = gzip.open(tok_path).read().decode() if tok_path.endswith(".gz") else open(tok_path).read()
    tok = Tokenizer.from_str(data)
    text = open(text_path, encoding="utf-8").read()
    docs = docs_of(text)
    mb = len(text.encode("utf-8")) / 1e6
    for rnd in ("first pass", "second pass"):
        t = time.perf_counter()
        n = 0
        for d in docs:
            n += len(tok.encode(d, add_special_tokens=False).ids)
        dt = time.perf_counter() - t
        print(f"hf tokenizers, 1 thread, {rnd}: {mb / dt:.2f} MB/s ({n} tokens, {dt:.2f} s)")


if __name__ == "__main__":
    if sys.argv[1] == "make-text":
        make_text(sys.argv[2], int(sys.argv[4]) if len(sys.argv) > 4 else 100)
    else:
        hf(sys.argv[2], sys.argv[3])
