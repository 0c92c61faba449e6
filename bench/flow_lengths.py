"""Flow-length JSD per class (whole flows, up to 1024 packets) -> bench/quality_1024.md's table.

    python bench/flow_lengths.py DATASET SYNTHETIC_DIR [SPLIT]

DATASET: `netdiff encode <real> -o DATASET --label-from-dir --max-packets 1024 --min-packets 2`;
SYNTHETIC_DIR: bench_evaluate.py's WORK/synthetic (one generate output per class).
"""
import csv, json, numpy as np, sys
ds, syn = sys.argv[1], sys.argv[2]
split = json.load(open(sys.argv[3] if len(sys.argv) > 3 else 'configs/default_split.json'))
test, train = set(split['test']), set(split['train'])
rows = list(csv.DictReader(open(f'{ds}/manifest.csv')))
classes = ['youtube','tls_https','zoom','amazon','http','microsoft_teams','google_meet','netflix']
bins = np.array([1,2,3,4,5,7,9,13,17,25,33,49,65,97,129,193,257,385,513,769,1025,10**9])
def hist(v):
    h = np.histogram(np.minimum(v, 1024), bins)[0].astype(float); return h / max(h.sum(), 1)
def jsd(p, q):
    m = (p + q) / 2
    f = lambda a: np.sum(a[a > 0] * np.log2(a[a > 0] / m[a > 0]))
    return 0.5 * f(p) + 0.5 * f(q)
out = {}
for c in classes:
    te = [int(r['packets']) for r in rows if r['label'] == c and r['file'] in test]
    tr = [int(r['packets']) for r in rows if r['label'] == c and r['file'] in train]
    sy = [int(r['packets']) for r in csv.DictReader(open(f'{syn}/{c}/manifest.csv'))]
    out[c] = (jsd(hist(sy), hist(te)), jsd(hist(tr), hist(te)), jsd(hist(sy), hist(tr)), np.mean(sy), np.mean(tr), np.mean(te), max(sy))
    print(c, ' '.join(f'{x:.3f}' for x in out[c][:3]), f'mean len syn {out[c][3]:.0f} train {out[c][4]:.0f} test {out[c][5]:.0f} max syn {out[c][6]}')
a = np.array([v[:3] for v in out.values()]).mean(0)
print('mean: synthetic vs test %.3f, train vs test %.3f, synthetic vs train %.3f' % tuple(a))
