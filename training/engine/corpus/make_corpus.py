"""Regenerate corpus.txt, the bundled text the built-in tiny tokenizer is trained on.

    python training/engine/corpus/make_corpus.py

The output is deterministic (fixed seed, no dependencies): a few thousand short English-ish sentences built
from common words plus pronounceable pseudo-words, so byte-level BPE reaches a vocabulary of about 1000.
"""

import random
from pathlib import Path

REAL_WORDS = (
    "the a an and or but if then so because when where what who how why is are was were be been "
    "have has had do does did can could will would should may might must not no yes very more most "
    "good bad better best small large new old first last long short high low same other each every "
    "people time year day way thing man woman child world life hand part place case week work number "
    "question answer model reply help write read tell give make take see know think say go come find "
    "please thanks sorry hello story poem code list plan idea reason example summary"
).split()

SYLLABLES = (
    "ba be bi bo bu ka ke ki ko ku la le li lo lu ma me mi mo mu na ne ni no nu ra re ri ro ru "
    "sa se si so su ta te ti to tu va ve vi vo vu za ze zi zo zu tra tre tri pla ple pli gro gra "
    "sh ch th an en in on un ar er ir or ur"
).split()


def make_corpus(seed: int = 0, n_sentences: int = 3000) -> str:
    rng = random.Random(seed)
    pseudo = sorted({"".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))) for _ in range(700)})[:600]
    lines = []
    for i in range(n_sentences):
        pool = REAL_WORDS if rng.random() < 0.6 else pseudo
        words = [rng.choice(REAL_WORDS) if rng.random() < 0.5 else rng.choice(pool) for _ in range(rng.randint(4, 12))]
        sentence = " ".join(words)
        end = rng.choice([".", ".", ".", "?", "!"])
        if i % 10 == 0:
            sentence = f"{rng.choice(['Q:', 'A:', 'Note:', '-'])} {sentence}"
        lines.append(sentence[0].upper() + sentence[1:] + end)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    out = Path(__file__).with_name("corpus.txt")
    out.write_text(make_corpus(), encoding="utf-8")
    print(f"wrote {out} ({out.stat().st_size} bytes)")
