#!/usr/bin/env python3
"""Makes the quickstart's tiny tokenizer and its arithmetic chat dataset
(committed next to this script; run again only to change them).

tokenizer.json: a byte-level BPE in Hugging Face's format with one token per
byte (ids 4..259), a few merges for the digits-and-operators text of the
dataset, and the ChatML special tokens at ids 0..3 matching the `tiny`
model preset (pad 0, eos 1).
"""
import json, random

def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}

specials = ["<|pad|>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
b2u = bytes_to_unicode()
vocab = {s: i for i, s in enumerate(specials)}
for b in range(256):
    vocab[b2u[b]] = 4 + b
merges = []
def merge(a, b):
    merges.append([a, b])
    vocab[a + b] = len(vocab)
sp = b2u[ord(" ")]
for w in ["What", "is"]:
    cur = w[0]
    for ch in w[1:]:
        merge(cur, ch)
        cur += ch
merge(sp, "What")
merge(sp, "is")
for op in "+-=*":
    merge(sp, op)
tok = {
    "version": "1.0", "truncation": None, "padding": None,
    "added_tokens": [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                      "normalized": False, "special": True} for i, s in enumerate(specials)],
    "normalizer": None,
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
    "post_processor": None,
    "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
    "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
              "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
              "vocab": vocab, "merges": merges},
}
json.dump(tok, open("tokenizer.json", "w"), ensure_ascii=False, indent=1)
chatml = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|endoftext|>", "pad_token": "<|pad|>",
           "bos_token": None, "model_max_length": 4096, "chat_template": chatml},
          open("tokenizer_config.json", "w"), indent=1)

rng = random.Random(0)
def example():
    a, b = rng.randint(0, 9), rng.randint(0, 9)
    if rng.random() < 0.5:
        q, ans = f"What is {a} + {b}?", f"{a} + {b} = {a + b}"
    else:
        a, b = max(a, b), min(a, b)
        q, ans = f"What is {a} - {b}?", f"{a} - {b} = {a - b}"
    return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": ans}]}
with open("arithmetic.jsonl", "w") as f:
    for _ in range(3000):
        f.write(json.dumps(example()) + "\n")

# the LoRA quickstart teaches the SFT'd model a new skill: multiplication
# (with some of the old questions so that it keeps them)
def times():
    a, b = rng.randint(0, 9), rng.randint(0, 9)
    return {"messages": [{"role": "user", "content": f"What is {a} * {b}?"},
                         {"role": "assistant", "content": f"{a} * {b} = {a * b}"}]}
with open("multiplication.jsonl", "w") as f:
    for _ in range(3000):
        f.write(json.dumps(times() if rng.random() < 0.8 else example()) + "\n")
print(f"vocab {len(vocab)}, merges {len(merges)}")
