import sys, statistics as st
rows=[]
for l in open(sys.argv[1]):
    if l.startswith('P '):
        rows.append([int(x) for x in l.split()[1:] if x!='|'])
t0=st.median(r[2] for r in rows)  # median wait end
cols=['start','wait','quant','bar','s0','s1','s2','s3','s4','s5','endmin','endmax']
for i,c in enumerate(cols):
    v=sorted((r[i+1]-t0)/1000 for r in rows if r[i+1])
    if v: print(f"{c:7s} min {v[0]:6.2f} med {st.median(v):6.2f} max {v[-1]:6.2f}")
