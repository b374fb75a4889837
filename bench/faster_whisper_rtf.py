# The Python side of the Whisper benchmark: the same model folder and audio through the
# `faster-whisper` package (same CTranslate2 engine), timed the same way. Prints one JSON line.
import argparse
import json
import time

from faster_whisper import WhisperModel
import faster_whisper


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--audio", required=True)
    p.add_argument("--compute-type", default="int8")
    p.add_argument("--beam-size", type=int, default=5)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--runs", type=int, default=3)
    a = p.parse_args()

    t0 = time.perf_counter()
    model = WhisperModel(a.model, device="cpu", compute_type=a.compute_type, cpu_threads=a.threads)
    load_s = time.perf_counter() - t0

    def once():
        segments, _info = model.transcribe(a.audio, language="en", beam_size=a.beam_size, vad_filter=False)
        return " ".join(s.text.strip() for s in segments)

    once()  # warm-up, as on the Rust side
    runs, text = [], ""
    for _ in range(a.runs):
        t0 = time.perf_counter()
        text = once()
        runs.append(time.perf_counter() - t0)
    print(json.dumps({"version": faster_whisper.__version__, "load_s": load_s, "runs": runs, "text": text}))


if __name__ == "__main__":
    main()
