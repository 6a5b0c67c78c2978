"""Trains the whole demo model on two cores: the captioner and the filter as two single-threaded
train.py runs side by side (--role captioner, --role filter), each with its own ViT, into one
output folder. One intra-op thread per process uses both cores better than one process with two
threads (at these matrix sizes the second thread mostly waits), and BLIP also fine-tunes its
captioner and its filter as separate models.

usage: /usr/bin/python3 tools/demo-model/train_all.py --data DIR --val DIR --out models/demo
           [--minutes 43] [--vision-pretrain-minutes 12] [--seed 11] [--log-dir DIR]
Prints one JSON line at the end: wall seconds and each run's final figures.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

ROLE_FLAGS = {
    "captioner": [],
    # Reversed relations are the filter's hard case; see filter_losses in train.py.
    "filter": ["--relation-negatives", "--grounding-weight", "1"],
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--val", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--minutes", type=float, default=43)
    p.add_argument("--vision-pretrain-minutes", type=float, default=12)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--log-dir", default=".")
    args = p.parse_args()

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    started = time.time()
    procs = {}
    for k, role in enumerate(("captioner", "filter")):
        log = os.path.join(args.log_dir, f"train-{role}.log")
        open(log, "w").close()  # train.py appends; the summary must read this run's lines only
        cmd = [sys.executable, os.path.join(HERE, "train.py"), "--data", args.data, "--val", args.val, "--out", args.out,
               "--role", role, "--threads", "1", "--seed", str(args.seed + k), "--minutes", str(args.minutes),
               "--vision-pretrain-minutes", str(args.vision_pretrain_minutes), "--log", log, *ROLE_FLAGS[role]]
        # stderr to a file, not a pipe: waiting on one run must not block the other on a full pipe.
        with open(log + ".err", "w") as err:
            procs[role] = (subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err), log)
    failed = []
    for role, (proc, log) in procs.items():
        proc.wait()
        if proc.returncode != 0:
            failed.append(role)
            with open(log + ".err") as f:
                sys.stderr.write(f"train_all: the {role} run exited {proc.returncode}:\n{f.read()[-4000:]}\n")
    summary = {"event": "train_all", "wall_seconds": round(time.time() - started, 1), "minutes": args.minutes, "seed": args.seed}
    for role, (_, log) in procs.items():
        with open(log) as f:
            finals = [json.loads(line) for line in f if '"event": "final"' in line]
        summary[role] = finals[-1] if finals else None  # None: that run ended before its final evaluation
    print(json.dumps(summary), flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
