"""Loads ../shared/parity/<set> weights into blip.py's modules and compares every output with the
vectors the Hugging Face transformers BLIP code produced. Exit status 0 only if all match.

usage: /usr/bin/python3 tools/demo-model/check_parity.py [parity-set-dir]
"""
import json
import os
import sys

import numpy as np
import torch

from blip import BlipForConditionalGeneration, BlipForImageTextRetrieval, load_hf_weights

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SET = os.path.join(HERE, "..", "..", "..", "shared", "parity", "t1")


def tensor(obj):
    dtype = np.float32 if obj["dtype"] == "float32" else np.int64
    return torch.from_numpy(np.asarray(obj["data"], dtype=dtype).reshape(obj["shape"]))


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_SET)
    vec = json.load(open(os.path.join(root, "vectors.json")))
    tol = vec["tolerance"]["float_abs"]
    failures = []

    def check(name, got, want):
        if got.shape != want.shape:
            failures.append(f"{name}: shape {tuple(got.shape)} != {tuple(want.shape)}")
            print(f"FAIL {name}: shape")
            return
        if want.dtype == torch.int64:
            ok = bool(torch.equal(got.long(), want))
            print(f"{'ok  ' if ok else 'FAIL'} {name}: exact ids")
        else:
            err = (got - want).abs().max().item()
            ok = err <= tol
            print(f"{'ok  ' if ok else 'FAIL'} {name}: max abs err {err:.2e}")
        if not ok:
            failures.append(name)

    models = {}
    for key, cls in (("captioner", BlipForConditionalGeneration), ("filter", BlipForImageTextRetrieval)):
        spec = vec["models"][key]
        config = json.load(open(os.path.join(root, spec["config"])))
        m = cls(config).eval()
        load_hf_weights(m, os.path.join(root, spec["weights"]))
        models[key] = (m, config)
    cap, cap_cfg = models["captioner"]
    flt, _ = models["filter"]
    ids = vec["special_ids"]

    with torch.no_grad():
        pv = tensor(vec["inputs"]["pixel_values"])
        cap_img = cap.vision_model(pv)
        flt_img = flt.vision_model(pv)
        check("vision.captioner_last_hidden_state", cap_img, tensor(vec["vision"]["captioner_last_hidden_state"]))
        check("vision.filter_last_hidden_state", flt_img, tensor(vec["vision"]["filter_last_hidden_state"]))

        tf = vec["captioner_teacher_forced"]
        logits = cap.text_decoder(tensor(tf["input_ids"]), tensor(tf["attention_mask"]), cap_img)
        check("captioner_teacher_forced.logits", logits, tensor(tf["logits"]))

        max_length = vec["captioner_greedy"].get("max_length", 12)
        for variant in ("no_prompt", "with_prompt"):
            g = vec["captioner_greedy"][variant]
            seq = cap.generate_greedy(cap_img, tensor(g["decoder_input_ids"]), max_length, ids["sep"], ids["pad"])
            check(f"captioner_greedy.{variant}.sequences", seq, tensor(g["sequences"]))

        itm = vec["filter_itm"]
        t_ids, t_mask = tensor(itm["input_ids"]), tensor(itm["attention_mask"])
        b = pv.shape[0]
        logits = torch.stack([flt.itm_logits(flt_img[i : i + 1].expand(t_ids.shape[0], -1, -1), t_ids, t_mask) for i in range(b)])
        check("filter_itm.itm_logits", logits, tensor(itm["itm_logits"]))
        check("filter_itm.itm_prob", logits.softmax(-1)[..., 1], tensor(itm["itm_prob"]))

        itc = vec["filter_itc"]
        i_feat = flt.image_feat(flt_img)
        t_feat = flt.text_feat(tensor(itc["input_ids"]), tensor(itc["attention_mask"]))
        check("filter_itc.image_feat", i_feat, tensor(itc["image_feat"]))
        check("filter_itc.text_feat", t_feat, tensor(itc["text_feat"]))
        check("filter_itc.sim", i_feat @ t_feat.T, tensor(itc["sim"]))

    if failures:
        print(f"PARITY FAILED ({len(failures)}): {', '.join(failures)}")
        sys.exit(1)
    print(f"parity OK: {os.path.basename(root)} reproduced within {tol}")


if __name__ == "__main__":
    main()
