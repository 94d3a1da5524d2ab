# plots.gp: written by moe report; run as `cd runs/sweep-science/report && gnuplot plots.gp`
reset
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 1000,560 noenhanced font ',10'
} else {
  set terminal png size 1000,560 noenhanced
}
set datafile missing '?'
set output 'loss.png'
set title 'Training loss (LM cross-entropy, moving mean) and validation loss (points)'
set grid
set key outside right top
set xlabel 'step'
set ylabel 'loss (nats/token)'
set yrange [*:2.6]
plot 'data/aux-free-s1.dat' u 1:3 w l lw 1.5 lc 1 dt 1 t 'aux-free-s1', 'data/aux-free-s1.dat' u 1:4 w p pt 7 ps 0.8 lc 1 dt 1 notitle, \
     'data/aux-free-s2.dat' u 1:3 w l lw 1.5 lc 2 dt 1 t 'aux-free-s2', 'data/aux-free-s2.dat' u 1:4 w p pt 7 ps 0.8 lc 2 dt 1 notitle, \
     'data/aux-free-s3.dat' u 1:3 w l lw 1.5 lc 3 dt 1 t 'aux-free-s3', 'data/aux-free-s3.dat' u 1:4 w p pt 7 ps 0.8 lc 3 dt 1 notitle, \
     'data/aux-free-seq-s1.dat' u 1:3 w l lw 1.5 lc 4 dt 1 t 'aux-free-seq-s1', 'data/aux-free-seq-s1.dat' u 1:4 w p pt 7 ps 0.8 lc 4 dt 1 notitle, \
     'data/aux-free-seq-s2.dat' u 1:3 w l lw 1.5 lc 5 dt 1 t 'aux-free-seq-s2', 'data/aux-free-seq-s2.dat' u 1:4 w p pt 7 ps 0.8 lc 5 dt 1 notitle, \
     'data/aux-free-seq-s3.dat' u 1:3 w l lw 1.5 lc 6 dt 1 t 'aux-free-seq-s3', 'data/aux-free-seq-s3.dat' u 1:4 w p pt 7 ps 0.8 lc 6 dt 1 notitle, \
     'data/seq-aux-s1.dat' u 1:3 w l lw 1.5 lc 7 dt 1 t 'seq-aux-s1', 'data/seq-aux-s1.dat' u 1:4 w p pt 7 ps 0.8 lc 7 dt 1 notitle, \
     'data/seq-aux-s2.dat' u 1:3 w l lw 1.5 lc 8 dt 1 t 'seq-aux-s2', 'data/seq-aux-s2.dat' u 1:4 w p pt 7 ps 0.8 lc 8 dt 1 notitle, \
     'data/seq-aux-s3.dat' u 1:3 w l lw 1.5 lc 1 dt 2 t 'seq-aux-s3', 'data/seq-aux-s3.dat' u 1:4 w p pt 7 ps 0.8 lc 1 dt 2 notitle, \
     'data/global-batch-s1.dat' u 1:3 w l lw 1.5 lc 2 dt 2 t 'global-batch-s1', 'data/global-batch-s1.dat' u 1:4 w p pt 7 ps 0.8 lc 2 dt 2 notitle, \
     'data/global-batch-s2.dat' u 1:3 w l lw 1.5 lc 3 dt 2 t 'global-batch-s2', 'data/global-batch-s2.dat' u 1:4 w p pt 7 ps 0.8 lc 3 dt 2 notitle, \
     'data/global-batch-s3.dat' u 1:3 w l lw 1.5 lc 4 dt 2 t 'global-batch-s3', 'data/global-batch-s3.dat' u 1:4 w p pt 7 ps 0.8 lc 4 dt 2 notitle, \
     'data/expert-choice-s1.dat' u 1:3 w l lw 1.5 lc 5 dt 2 t 'expert-choice-s1', 'data/expert-choice-s1.dat' u 1:4 w p pt 7 ps 0.8 lc 5 dt 2 notitle, \
     'data/expert-choice-s2.dat' u 1:3 w l lw 1.5 lc 6 dt 2 t 'expert-choice-s2', 'data/expert-choice-s2.dat' u 1:4 w p pt 7 ps 0.8 lc 6 dt 2 notitle, \
     'data/expert-choice-s3.dat' u 1:3 w l lw 1.5 lc 7 dt 2 t 'expert-choice-s3', 'data/expert-choice-s3.dat' u 1:4 w p pt 7 ps 0.8 lc 7 dt 2 notitle, \
     'data/dense-s1.dat' u 1:3 w l lw 1.5 lc 8 dt 2 t 'dense-s1', 'data/dense-s1.dat' u 1:4 w p pt 7 ps 0.8 lc 8 dt 2 notitle, \
     'data/dense-s2.dat' u 1:3 w l lw 1.5 lc 1 dt 3 t 'dense-s2', 'data/dense-s2.dat' u 1:4 w p pt 7 ps 0.8 lc 1 dt 3 notitle, \
     'data/dense-s3.dat' u 1:3 w l lw 1.5 lc 2 dt 3 t 'dense-s3', 'data/dense-s3.dat' u 1:4 w p pt 7 ps 0.8 lc 2 dt 3 notitle, \
     'data/experts-4-s1.dat' u 1:3 w l lw 1.5 lc 3 dt 3 t 'experts-4-s1', 'data/experts-4-s1.dat' u 1:4 w p pt 7 ps 0.8 lc 3 dt 3 notitle, \
     'data/experts-4-s2.dat' u 1:3 w l lw 1.5 lc 4 dt 3 t 'experts-4-s2', 'data/experts-4-s2.dat' u 1:4 w p pt 7 ps 0.8 lc 4 dt 3 notitle, \
     'data/experts-4-s3.dat' u 1:3 w l lw 1.5 lc 5 dt 3 t 'experts-4-s3', 'data/experts-4-s3.dat' u 1:4 w p pt 7 ps 0.8 lc 5 dt 3 notitle, \
     'data/experts-8-s1.dat' u 1:3 w l lw 1.5 lc 6 dt 3 t 'experts-8-s1', 'data/experts-8-s1.dat' u 1:4 w p pt 7 ps 0.8 lc 6 dt 3 notitle, \
     'data/experts-8-s2.dat' u 1:3 w l lw 1.5 lc 7 dt 3 t 'experts-8-s2', 'data/experts-8-s2.dat' u 1:4 w p pt 7 ps 0.8 lc 7 dt 3 notitle, \
     'data/experts-8-s3.dat' u 1:3 w l lw 1.5 lc 8 dt 3 t 'experts-8-s3', 'data/experts-8-s3.dat' u 1:4 w p pt 7 ps 0.8 lc 8 dt 3 notitle, \
     'data/experts-16-s1.dat' u 1:3 w l lw 1.5 lc 1 dt 4 t 'experts-16-s1', 'data/experts-16-s1.dat' u 1:4 w p pt 7 ps 0.8 lc 1 dt 4 notitle, \
     'data/experts-16-s2.dat' u 1:3 w l lw 1.5 lc 2 dt 4 t 'experts-16-s2', 'data/experts-16-s2.dat' u 1:4 w p pt 7 ps 0.8 lc 2 dt 4 notitle, \
     'data/experts-16-s3.dat' u 1:3 w l lw 1.5 lc 3 dt 4 t 'experts-16-s3', 'data/experts-16-s3.dat' u 1:4 w p pt 7 ps 0.8 lc 3 dt 4 notitle, \
     'data/experts-32-s1.dat' u 1:3 w l lw 1.5 lc 4 dt 4 t 'experts-32-s1', 'data/experts-32-s1.dat' u 1:4 w p pt 7 ps 0.8 lc 4 dt 4 notitle, \
     'data/experts-32-s2.dat' u 1:3 w l lw 1.5 lc 5 dt 4 t 'experts-32-s2', 'data/experts-32-s2.dat' u 1:4 w p pt 7 ps 0.8 lc 5 dt 4 notitle, \
     'data/experts-32-s3.dat' u 1:3 w l lw 1.5 lc 6 dt 4 t 'experts-32-s3', 'data/experts-32-s3.dat' u 1:4 w p pt 7 ps 0.8 lc 6 dt 4 notitle
reset
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 1000,560 noenhanced font ',10'
} else {
  set terminal png size 1000,560 noenhanced
}
set datafile missing '?'
set output 'loss-points.png'
set title 'Training loss (moving mean) and validation loss (points), mean over seeds per point'
set grid
set key outside right top
set xlabel 'step'
set ylabel 'loss (nats/token)'
set yrange [*:2.6]
plot 'data/point-0.dat' u 1:2 w l lw 2 lc 1 dt 1 t 'aux-free (3)', 'data/point-0.dat' u 1:3 w lp pt 7 ps 0.8 lw 0.5 lc 1 dt 1 notitle, \
     'data/point-1.dat' u 1:2 w l lw 2 lc 2 dt 1 t 'aux-free-seq (3)', 'data/point-1.dat' u 1:3 w lp pt 7 ps 0.8 lw 0.5 lc 2 dt 1 notitle, \
     'data/point-2.dat' u 1:2 w l lw 2 lc 3 dt 1 t 'seq-aux (3)', 'data/point-2.dat' u 1:3 w lp pt 7 ps 0.8 lw 0.5 lc 3 dt 1 notitle, \
     'data/point-3.dat' u 1:2 w l lw 2 lc 4 dt 1 t 'global-batch (3)', 'data/point-3.dat' u 1:3 w lp pt 7 ps 0.8 lw 0.5 lc 4 dt 1 notitle, \
     'data/point-4.dat' u 1:2 w l lw 2 lc 5 dt 1 t 'expert-choice (3)', 'data/point-4.dat' u 1:3 w lp pt 7 ps 0.8 lw 0.5 lc 5 dt 1 notitle, \
     'data/point-5.dat' u 1:2 w l lw 2 lc 6 dt 1 t 'dense (3)', 'data/point-5.dat' u 1:3 w lp pt 7 ps 0.8 lw 0.5 lc 6 dt 1 notitle, \
     'data/point-6.dat' u 1:2 w l lw 2 lc 7 dt 1 t 'experts-4 (3)', 'data/point-6.dat' u 1:3 w lp pt 7 ps 0.8 lw 0.5 lc 7 dt 1 notitle, \
     'data/point-7.dat' u 1:2 w l lw 2 lc 8 dt 1 t 'experts-8 (3)', 'data/point-7.dat' u 1:3 w lp pt 7 ps 0.8 lw 0.5 lc 8 dt 1 notitle, \
     'data/point-8.dat' u 1:2 w l lw 2 lc 1 dt 2 t 'experts-16 (3)', 'data/point-8.dat' u 1:3 w lp pt 7 ps 0.8 lw 0.5 lc 1 dt 2 notitle, \
     'data/point-9.dat' u 1:2 w l lw 2 lc 2 dt 2 t 'experts-32 (3)', 'data/point-9.dat' u 1:3 w lp pt 7 ps 0.8 lw 0.5 lc 2 dt 2 notitle
reset
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 1000,560 noenhanced font ',10'
} else {
  set terminal png size 1000,560 noenhanced
}
set datafile missing '?'
set output 'load-points.png'
set title 'Expert load max/mean (moving mean), mean over seeds per point; 1 = perfect balance'
set grid
set key outside right top
set xlabel 'step'
set ylabel 'max / mean load'
set yrange [0:*]
plot 1 w l lc 'gray' dt 2 lw 2 t 'perfect balance', \
    'data/point-0.dat' u 1:4 w l lw 2 lc 1 dt 1 t 'aux-free (3)', \
    'data/point-1.dat' u 1:4 w l lw 2 lc 2 dt 1 t 'aux-free-seq (3)', \
    'data/point-2.dat' u 1:4 w l lw 2 lc 3 dt 1 t 'seq-aux (3)', \
    'data/point-3.dat' u 1:4 w l lw 2 lc 4 dt 1 t 'global-batch (3)', \
    'data/point-4.dat' u 1:4 w l lw 2 lc 5 dt 1 t 'expert-choice (3)', \
    'data/point-6.dat' u 1:4 w l lw 2 lc 7 dt 1 t 'experts-4 (3)', \
    'data/point-7.dat' u 1:4 w l lw 2 lc 8 dt 1 t 'experts-8 (3)', \
    'data/point-8.dat' u 1:4 w l lw 2 lc 1 dt 2 t 'experts-16 (3)', \
    'data/point-9.dat' u 1:4 w l lw 2 lc 2 dt 2 t 'experts-32 (3)'
reset
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 1000,560 noenhanced font ',10'
} else {
  set terminal png size 1000,560 noenhanced
}
set datafile missing '?'
set output 'load.png'
set title 'Expert load max/mean (mean over MoE layers, moving mean; 1 = perfect balance)'
set grid
set key outside right top
set xlabel 'step'
set ylabel 'max / mean load'
set yrange [0:*]
plot 1 w l lc 'gray' dt 2 lw 2 t 'perfect balance', \
    'data/aux-free-s1.dat' u 1:6 w l lw 1.5 lc 1 dt 1 t 'aux-free-s1', \
    'data/aux-free-s2.dat' u 1:6 w l lw 1.5 lc 2 dt 1 t 'aux-free-s2', \
    'data/aux-free-s3.dat' u 1:6 w l lw 1.5 lc 3 dt 1 t 'aux-free-s3', \
    'data/aux-free-seq-s1.dat' u 1:6 w l lw 1.5 lc 4 dt 1 t 'aux-free-seq-s1', \
    'data/aux-free-seq-s2.dat' u 1:6 w l lw 1.5 lc 5 dt 1 t 'aux-free-seq-s2', \
    'data/aux-free-seq-s3.dat' u 1:6 w l lw 1.5 lc 6 dt 1 t 'aux-free-seq-s3', \
    'data/seq-aux-s1.dat' u 1:6 w l lw 1.5 lc 7 dt 1 t 'seq-aux-s1', \
    'data/seq-aux-s2.dat' u 1:6 w l lw 1.5 lc 8 dt 1 t 'seq-aux-s2', \
    'data/seq-aux-s3.dat' u 1:6 w l lw 1.5 lc 1 dt 2 t 'seq-aux-s3', \
    'data/global-batch-s1.dat' u 1:6 w l lw 1.5 lc 2 dt 2 t 'global-batch-s1', \
    'data/global-batch-s2.dat' u 1:6 w l lw 1.5 lc 3 dt 2 t 'global-batch-s2', \
    'data/global-batch-s3.dat' u 1:6 w l lw 1.5 lc 4 dt 2 t 'global-batch-s3', \
    'data/expert-choice-s1.dat' u 1:6 w l lw 1.5 lc 5 dt 2 t 'expert-choice-s1', \
    'data/expert-choice-s2.dat' u 1:6 w l lw 1.5 lc 6 dt 2 t 'expert-choice-s2', \
    'data/expert-choice-s3.dat' u 1:6 w l lw 1.5 lc 7 dt 2 t 'expert-choice-s3', \
    'data/experts-4-s1.dat' u 1:6 w l lw 1.5 lc 3 dt 3 t 'experts-4-s1', \
    'data/experts-4-s2.dat' u 1:6 w l lw 1.5 lc 4 dt 3 t 'experts-4-s2', \
    'data/experts-4-s3.dat' u 1:6 w l lw 1.5 lc 5 dt 3 t 'experts-4-s3', \
    'data/experts-8-s1.dat' u 1:6 w l lw 1.5 lc 6 dt 3 t 'experts-8-s1', \
    'data/experts-8-s2.dat' u 1:6 w l lw 1.5 lc 7 dt 3 t 'experts-8-s2', \
    'data/experts-8-s3.dat' u 1:6 w l lw 1.5 lc 8 dt 3 t 'experts-8-s3', \
    'data/experts-16-s1.dat' u 1:6 w l lw 1.5 lc 1 dt 4 t 'experts-16-s1', \
    'data/experts-16-s2.dat' u 1:6 w l lw 1.5 lc 2 dt 4 t 'experts-16-s2', \
    'data/experts-16-s3.dat' u 1:6 w l lw 1.5 lc 3 dt 4 t 'experts-16-s3', \
    'data/experts-32-s1.dat' u 1:6 w l lw 1.5 lc 4 dt 4 t 'experts-32-s1', \
    'data/experts-32-s2.dat' u 1:6 w l lw 1.5 lc 5 dt 4 t 'experts-32-s2', \
    'data/experts-32-s3.dat' u 1:6 w l lw 1.5 lc 6 dt 4 t 'experts-32-s3'
reset
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 1000,560 noenhanced font ',10'
} else {
  set terminal png size 1000,560 noenhanced
}
set datafile missing '?'
set output 'drops.png'
set title 'Dropped fraction of routed token-expert pairs (all MoE layers, moving mean)'
set grid
set key outside right top
set xlabel 'step'
set ylabel 'drop fraction'
set yrange [0:1]
set label 1 'no drops (dropless)' at graph 0.5,0.5 center font ',16'
plot 'data/aux-free-s1.dat' u 1:8 w l lw 1.5 lc 1 dt 1 t 'aux-free-s1: no drops (dropless)', \
    'data/aux-free-s2.dat' u 1:8 w l lw 1.5 lc 2 dt 1 t 'aux-free-s2: no drops (dropless)', \
    'data/aux-free-s3.dat' u 1:8 w l lw 1.5 lc 3 dt 1 t 'aux-free-s3: no drops (dropless)', \
    'data/aux-free-seq-s1.dat' u 1:8 w l lw 1.5 lc 4 dt 1 t 'aux-free-seq-s1: no drops (dropless)', \
    'data/aux-free-seq-s2.dat' u 1:8 w l lw 1.5 lc 5 dt 1 t 'aux-free-seq-s2: no drops (dropless)', \
    'data/aux-free-seq-s3.dat' u 1:8 w l lw 1.5 lc 6 dt 1 t 'aux-free-seq-s3: no drops (dropless)', \
    'data/seq-aux-s1.dat' u 1:8 w l lw 1.5 lc 7 dt 1 t 'seq-aux-s1: no drops (dropless)', \
    'data/seq-aux-s2.dat' u 1:8 w l lw 1.5 lc 8 dt 1 t 'seq-aux-s2: no drops (dropless)', \
    'data/seq-aux-s3.dat' u 1:8 w l lw 1.5 lc 1 dt 2 t 'seq-aux-s3: no drops (dropless)', \
    'data/global-batch-s1.dat' u 1:8 w l lw 1.5 lc 2 dt 2 t 'global-batch-s1: no drops (dropless)', \
    'data/global-batch-s2.dat' u 1:8 w l lw 1.5 lc 3 dt 2 t 'global-batch-s2: no drops (dropless)', \
    'data/global-batch-s3.dat' u 1:8 w l lw 1.5 lc 4 dt 2 t 'global-batch-s3: no drops (dropless)', \
    'data/expert-choice-s1.dat' u 1:8 w l lw 1.5 lc 5 dt 2 t 'expert-choice-s1: no drops (dropless)', \
    'data/expert-choice-s2.dat' u 1:8 w l lw 1.5 lc 6 dt 2 t 'expert-choice-s2: no drops (dropless)', \
    'data/expert-choice-s3.dat' u 1:8 w l lw 1.5 lc 7 dt 2 t 'expert-choice-s3: no drops (dropless)', \
    'data/experts-4-s1.dat' u 1:8 w l lw 1.5 lc 3 dt 3 t 'experts-4-s1: no drops (dropless)', \
    'data/experts-4-s2.dat' u 1:8 w l lw 1.5 lc 4 dt 3 t 'experts-4-s2: no drops (dropless)', \
    'data/experts-4-s3.dat' u 1:8 w l lw 1.5 lc 5 dt 3 t 'experts-4-s3: no drops (dropless)', \
    'data/experts-8-s1.dat' u 1:8 w l lw 1.5 lc 6 dt 3 t 'experts-8-s1: no drops (dropless)', \
    'data/experts-8-s2.dat' u 1:8 w l lw 1.5 lc 7 dt 3 t 'experts-8-s2: no drops (dropless)', \
    'data/experts-8-s3.dat' u 1:8 w l lw 1.5 lc 8 dt 3 t 'experts-8-s3: no drops (dropless)', \
    'data/experts-16-s1.dat' u 1:8 w l lw 1.5 lc 1 dt 4 t 'experts-16-s1: no drops (dropless)', \
    'data/experts-16-s2.dat' u 1:8 w l lw 1.5 lc 2 dt 4 t 'experts-16-s2: no drops (dropless)', \
    'data/experts-16-s3.dat' u 1:8 w l lw 1.5 lc 3 dt 4 t 'experts-16-s3: no drops (dropless)', \
    'data/experts-32-s1.dat' u 1:8 w l lw 1.5 lc 4 dt 4 t 'experts-32-s1: no drops (dropless)', \
    'data/experts-32-s2.dat' u 1:8 w l lw 1.5 lc 5 dt 4 t 'experts-32-s2: no drops (dropless)', \
    'data/experts-32-s3.dat' u 1:8 w l lw 1.5 lc 6 dt 4 t 'experts-32-s3: no drops (dropless)'
reset
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 560,280 noenhanced font ',10'
} else {
  set terminal png size 560,280 noenhanced
}
set datafile missing '?'
set output 'heatmap-aux-free-s1.png'
set title 'aux-free-s1: share of token-expert pairs per expert (last 10% of steps)'
set grid
set cbrange [0:0.5]
unset grid
set xlabel 'expert'
set ylabel 'MoE layer'
set palette defined (0 'white', 1 '#fdd49e', 2 '#ef6548', 3 '#7f0000')
set xrange [-0.5:7.5]
set yrange [-0.5:3.5]
set ytics ('0' 0, '1' 1, '2' 2, '3' 3)
set xtics 1
plot 'data/aux-free-s1-share.dat' u 1:2:(0.5):(0.5):3 w boxxyerror fs solid 1.0 noborder fc palette notitle
reset
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 560,280 noenhanced font ',10'
} else {
  set terminal png size 560,280 noenhanced
}
set datafile missing '?'
set output 'heatmap-aux-free-s2.png'
set title 'aux-free-s2: share of token-expert pairs per expert (last 10% of steps)'
set grid
set cbrange [0:0.5]
unset grid
set xlabel 'expert'
set ylabel 'MoE layer'
set palette defined (0 'white', 1 '#fdd49e', 2 '#ef6548', 3 '#7f0000')
set xrange [-0.5:7.5]
set yrange [-0.5:3.5]
set ytics ('0' 0, '1' 1, '2' 2, '3' 3)
set xtics 1
plot 'data/aux-free-s2-share.dat' u 1:2:(0.5):(0.5):3 w boxxyerror fs solid 1.0 noborder fc palette notitle
reset
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 560,280 noenhanced font ',10'
} else {
  set terminal png size 560,280 noenhanced
}
set datafile missing '?'
set output 'heatmap-aux-free-s3.png'
set title 'aux-free-s3: share of token-expert pairs per expert (last 10% of steps)'
set grid
set cbrange [0:0.5]
unset grid
set xlabel 'expert'
set ylabel 'MoE layer'
set palette defined (0 'white', 1 '#fdd49e', 2 '#ef6548', 3 '#7f0000')
set xrange [-0.5:7.5]
set yrange [-0.5:3.5]
set ytics ('0' 0, '1' 1, '2' 2, '3' 3)
set xtics 1
plot 'data/aux-free-s3-share.dat' u 1:2:(0.5):(0.5):3 w boxxyerror fs solid 1.0 noborder fc palette notitle
reset
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 560,280 noenhanced font ',10'
} else {
  set terminal png size 560,280 noenhanced
}
set datafile missing '?'
set output 'heatmap-aux-free-seq-s1.png'
set title 'aux-free-seq-s1: share of token-expert pairs per expert (last 10% of steps)'
set grid
set cbrange [0:0.5]
unset grid
set xlabel 'expert'
set ylabel 'MoE layer'
set palette defined (0 'white', 1 '#fdd49e', 2 '#ef6548', 3 '#7f0000')
set xrange [-0.5:7.5]
set yrange [-0.5:3.5]
set ytics ('0' 0, '1' 1, '2' 2, '3' 3)
set xtics 1
plot 'data/aux-free-seq-s1-share.dat' u 1:2:(0.5):(0.5):3 w boxxyerror fs solid 1.0 noborder fc palette notitle
reset
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 560,280 noenhanced font ',10'
} else {
  set terminal png size 560,280 noenhanced
}
set datafile missing '?'
set output 'heatmap-aux-free-seq-s2.png'
set title 'aux-free-seq-s2: share of token-expert pairs per expert (last 10% of steps)'
set grid
set cbrange [0:0.5]
unset grid
set xlabel 'expert'
set ylabel 'MoE layer'
set palette defined (0 'white', 1 '#fdd49e', 2 '#ef6548', 3 '#7f0000')
set xrange [-0.5:7.5]
set yrange [-0.5:3.5]
set ytics ('0' 0, '1' 1, '2' 2, '3' 3)
set xtics 1
plot 'data/aux-free-seq-s2-share.dat' u 1:2:(0.5):(0.5):3 w boxxyerror fs solid 1.0 noborder fc palette notitle
reset
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 560,280 noenhanced font ',10'
} else {
  set terminal png size 560,280 noenhanced
}
set datafile missing '?'
set output 'heatmap-aux-free-seq-s3.png'
set title 'aux-free-seq-s3: share of token-expert pairs per expert (last 10% of steps)'
set grid
set cbrange [0:0.5]
unset grid
set xlabel 'expert'
set ylabel 'MoE layer'
set palette defined (0 'white', 1 '#fdd49e', 2 '#ef6548', 3 '#7f0000')
set xrange [-0.5:7.5]
set yrange [-0.5:3.5]
set ytics ('0' 0, '1' 1, '2' 2, '3' 3)
set xtics 1
plot 'data/aux-free-seq-s3-share.dat' u 1:2:(0.5):(0.5):3 w boxxyerror fs solid 1.0 noborder fc palette notitle
reset
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 560,280 noenhanced font ',10'
} else {
  set terminal png size 560,280 noenhanced
}
set datafile missing '?'
set output 'heatmap-seq-aux-s1.png'
set title 'seq-aux-s1: share of token-expert pairs per expert (last 10% of steps)'
set grid
set cbrange [0:0.5]
unset grid
set xlabel 'expert'
set ylabel 'MoE layer'
set palette defined (0 'white', 1 '#fdd49e', 2 '#ef6548', 3 '#7f0000')
set xrange [-0.5:7.5]
set yrange [-0.5:3.5]
set ytics ('0' 0, '1' 1, '2' 2, '3' 3)
set xtics 1
plot 'data/seq-aux-s1-share.dat' u 1:2:(0.5):(0.5):3 w boxxyerror fs solid 1.0 noborder fc palette notitle
reset
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 560,280 noenhanced font ',10'
} else {
  set terminal png size 560,280 noenhanced
}
set datafile missing '?'
set output 'heatmap-seq-aux-s2.png'
set title 'seq-aux-s2: share of token-expert pairs per expert (last 10% of steps)'
set grid
set cbrange [0:0.5]
unset grid
set xlabel 'expert'
set ylabel 'MoE layer'
set palette defined (0 'white', 1 '#fdd49e', 2 '#ef6548', 3 '#7f0000')
set xrange [-0.5:7.5]
set yrange [-0.5:3.5]
set ytics ('0' 0, '1' 1, '2' 2, '3' 3)
set xtics 1
plot 'data/seq-aux-s2-share.dat' u 1:2:(0.5):(0.5):3 w boxxyerror fs solid 1.0 noborder fc palette notitle
reset
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 560,280 noenhanced font ',10'
} else {
  set terminal png size 560,280 noenhanced
}
set datafile missing '?'
set output 'heatmap-seq-aux-s3.png'
set title 'seq-aux-s3: share of token-expert pairs per expert (last 10% of steps)'
set grid
set cbrange [0:0.5]
unset grid
set xlabel 'expert'
set ylabel 'MoE layer'
set palette defined (0 'white', 1 '#fdd49e', 2 '#ef6548', 3 '#7f0000')
set xrange [-0.5:7.5]
set yrange [-0.5:3.5]
set ytics ('0' 0, '1' 1, '2' 2, '3' 3)
set xtics 1
plot 'data/seq-aux-s3-share.dat' u 1:2:(0.5):(0.5):3 w boxxyerror fs solid 1.0 noborder fc palette notitle
reset
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 560,280 noenhanced font ',10'
} else {
  set terminal png size 560,280 noenhanced
}
set datafile missing '?'
set output 'heatmap-global-batch-s1.png'
set title 'global-batch-s1: share of token-expert pairs per expert (last 10% of steps)'
set grid
set cbrange [0:0.5]
unset grid
set xlabel 'expert'
set ylabel 'MoE layer'
set palette defined (0 'white', 1 '#fdd49e', 2 '#ef6548', 3 '#7f0000')
set xrange [-0.5:7.5]
set yrange [-0.5:3.5]
set ytics ('0' 0, '1' 1, '2' 2, '3' 3)
set xtics 1
plot 'data/global-batch-s1-share.dat' u 1:2:(0.5):(0.5):3 w boxxyerror fs solid 1.0 noborder fc palette notitle
reset
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 560,280 noenhanced font ',10'
} else {
  set terminal png size 560,280 noenhanced
}
set datafile missing '?'
set output 'heatmap-global-batch-s2.png'
set title 'global-batch-s2: share of token-expert pairs per expert (last 10% of steps)'
set grid
set cbrange [0:0.5]
unset grid
set xlabel 'expert'
set ylabel 'MoE layer'
set palette defined (0 'white', 1 '#fdd49e', 2 '#ef6548', 3 '#7f0000')
set xrange [-0.5:7.5]
set yrange [-0.5:3.5]
set ytics ('0' 0, '1' 1, '2' 2, '3' 3)
set xtics 1
plot 'data/global-batch-s2-share.dat' u 1:2:(0.5):(0.5):3 w boxxyerror fs solid 1.0 noborder fc palette notitle
reset
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 560,280 noenhanced font ',10'
} else {
  set terminal png size 560,280 noenhanced
}
set datafile missing '?'
set output 'heatmap-global-batch-s3.png'
set title 'global-batch-s3: share of token-expert pairs per expert (last 10% of steps)'
set grid
set cbrange [0:0.5]
unset grid
set xlabel 'expert'
set ylabel 'MoE layer'
set palette defined (0 'white', 1 '#fdd49e', 2 '#ef6548', 3 '#7f0000')
set xrange [-0.5:7.5]
set yrange [-0.5:3.5]
set ytics ('0' 0, '1' 1, '2' 2, '3' 3)
set xtics 1
plot 'data/global-batch-s3-share.dat' u 1:2:(0.5):(0.5):3 w boxxyerror fs solid 1.0 noborder fc palette notitle
reset
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 560,280 noenhanced font ',10'
} else {
  set terminal png size 560,280 noenhanced
}
set datafile missing '?'
set output 'heatmap-expert-choice-s1.png'
set title 'expert-choice-s1: share of token-expert pairs per expert (last 10% of steps)'
set grid
set cbrange [0:0.5]
unset grid
set xlabel 'expert'
set ylabel 'MoE layer'
set palette defined (0 'white', 1 '#fdd49e', 2 '#ef6548', 3 '#7f0000')
set xrange [-0.5:7.5]
set yrange [-0.5:3.5]
set ytics ('0' 0, '1' 1, '2' 2, '3' 3)
set xtics 1
plot 'data/expert-choice-s1-share.dat' u 1:2:(0.5):(0.5):3 w boxxyerror fs solid 1.0 noborder fc palette notitle
reset
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 560,280 noenhanced font ',10'
} else {
  set terminal png size 560,280 noenhanced
}
set datafile missing '?'
set output 'heatmap-expert-choice-s2.png'
set title 'expert-choice-s2: share of token-expert pairs per expert (last 10% of steps)'
set grid
set cbrange [0:0.5]
unset grid
set xlabel 'expert'
set ylabel 'MoE layer'
set palette defined (0 'white', 1 '#fdd49e', 2 '#ef6548', 3 '#7f0000')
set xrange [-0.5:7.5]
set yrange [-0.5:3.5]
set ytics ('0' 0, '1' 1, '2' 2, '3' 3)
set xtics 1
plot 'data/expert-choice-s2-share.dat' u 1:2:(0.5):(0.5):3 w boxxyerror fs solid 1.0 noborder fc palette notitle
reset
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 560,280 noenhanced font ',10'
} else {
  set terminal png size 560,280 noenhanced
}
set datafile missing '?'
set output 'heatmap-expert-choice-s3.png'
set title 'expert-choice-s3: share of token-expert pairs per expert (last 10% of steps)'
set grid
set cbrange [0:0.5]
unset grid
set xlabel 'expert'
set ylabel 'MoE layer'
set palette defined (0 'white', 1 '#fdd49e', 2 '#ef6548', 3 '#7f0000')
set xrange [-0.5:7.5]
set yrange [-0.5:3.5]
set ytics ('0' 0, '1' 1, '2' 2, '3' 3)
set xtics 1
plot 'data/expert-choice-s3-share.dat' u 1:2:(0.5):(0.5):3 w boxxyerror fs solid 1.0 noborder fc palette notitle
reset
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 560,280 noenhanced font ',10'
} else {
  set terminal png size 560,280 noenhanced
}
set datafile missing '?'
set output 'heatmap-experts-4-s1.png'
set title 'experts-4-s1: share of token-expert pairs per expert (last 10% of steps)'
set grid
set cbrange [0:0.5]
unset grid
set xlabel 'expert'
set ylabel 'MoE layer'
set palette defined (0 'white', 1 '#fdd49e', 2 '#ef6548', 3 '#7f0000')
set xrange [-0.5:3.5]
set yrange [-0.5:3.5]
set ytics ('0' 0, '1' 1, '2' 2, '3' 3)
set xtics 1
plot 'data/experts-4-s1-share.dat' u 1:2:(0.5):(0.5):3 w boxxyerror fs solid 1.0 noborder fc palette notitle
reset
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 560,280 noenhanced font ',10'
} else {
  set terminal png size 560,280 noenhanced
}
set datafile missing '?'
set output 'heatmap-experts-4-s2.png'
set title 'experts-4-s2: share of token-expert pairs per expert (last 10% of steps)'
set grid
set cbrange [0:0.5]
unset grid
set xlabel 'expert'
set ylabel 'MoE layer'
set palette defined (0 'white', 1 '#fdd49e', 2 '#ef6548', 3 '#7f0000')
set xrange [-0.5:3.5]
set yrange [-0.5:3.5]
set ytics ('0' 0, '1' 1, '2' 2, '3' 3)
set xtics 1
plot 'data/experts-4-s2-share.dat' u 1:2:(0.5):(0.5):3 w boxxyerror fs solid 1.0 noborder fc palette notitle
reset
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 560,280 noenhanced font ',10'
} else {
  set terminal png size 560,280 noenhanced
}
set datafile missing '?'
set output 'heatmap-experts-4-s3.png'
set title 'experts-4-s3: share of token-expert pairs per expert (last 10% of steps)'
set grid
set cbrange [0:0.5]
unset grid
set xlabel 'expert'
set ylabel 'MoE layer'
set palette defined (0 'white', 1 '#fdd49e', 2 '#ef6548', 3 '#7f0000')
set xrange [-0.5:3.5]
set yrange [-0.5:3.5]
set ytics ('0' 0, '1' 1, '2' 2, '3' 3)
set xtics 1
plot 'data/experts-4-s3-share.dat' u 1:2:(0.5):(0.5):3 w boxxyerror fs solid 1.0 noborder fc palette notitle
reset
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 560,280 noenhanced font ',10'
} else {
  set terminal png size 560,280 noenhanced
}
set datafile missing '?'
set output 'heatmap-experts-8-s1.png'
set title 'experts-8-s1: share of token-expert pairs per expert (last 10% of steps)'
set grid
set cbrange [0:0.5]
unset grid
set xlabel 'expert'
set ylabel 'MoE layer'
set palette defined (0 'white', 1 '#fdd49e', 2 '#ef6548', 3 '#7f0000')
set xrange [-0.5:7.5]
set yrange [-0.5:3.5]
set ytics ('0' 0, '1' 1, '2' 2, '3' 3)
set xtics 1
plot 'data/experts-8-s1-share.dat' u 1:2:(0.5):(0.5):3 w boxxyerror fs solid 1.0 noborder fc palette notitle
reset
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 560,280 noenhanced font ',10'
} else {
  set terminal png size 560,280 noenhanced
}
set datafile missing '?'
set output 'heatmap-experts-8-s2.png'
set title 'experts-8-s2: share of token-expert pairs per expert (last 10% of steps)'
set grid
set cbrange [0:0.5]
unset grid
set xlabel 'expert'
set ylabel 'MoE layer'
set palette defined (0 'white', 1 '#fdd49e', 2 '#ef6548', 3 '#7f0000')
set xrange [-0.5:7.5]
set yrange [-0.5:3.5]
set ytics ('0' 0, '1' 1, '2' 2, '3' 3)
set xtics 1
plot 'data/experts-8-s2-share.dat' u 1:2:(0.5):(0.5):3 w boxxyerror fs solid 1.0 noborder fc palette notitle
reset
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 560,280 noenhanced font ',10'
} else {
  set terminal png size 560,280 noenhanced
}
set datafile missing '?'
set output 'heatmap-experts-8-s3.png'
set title 'experts-8-s3: share of token-expert pairs per expert (last 10% of steps)'
set grid
set cbrange [0:0.5]
unset grid
set xlabel 'expert'
set ylabel 'MoE layer'
set palette defined (0 'white', 1 '#fdd49e', 2 '#ef6548', 3 '#7f0000')
set xrange [-0.5:7.5]
set yrange [-0.5:3.5]
set ytics ('0' 0, '1' 1, '2' 2, '3' 3)
set xtics 1
plot 'data/experts-8-s3-share.dat' u 1:2:(0.5):(0.5):3 w boxxyerror fs solid 1.0 noborder fc palette notitle
reset
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 560,280 noenhanced font ',10'
} else {
  set terminal png size 560,280 noenhanced
}
set datafile missing '?'
set output 'heatmap-experts-16-s1.png'
set title 'experts-16-s1: share of token-expert pairs per expert (last 10% of steps)'
set grid
set cbrange [0:0.5]
unset grid
set xlabel 'expert'
set ylabel 'MoE layer'
set palette defined (0 'white', 1 '#fdd49e', 2 '#ef6548', 3 '#7f0000')
set xrange [-0.5:15.5]
set yrange [-0.5:3.5]
set ytics ('0' 0, '1' 1, '2' 2, '3' 3)
set xtics 1
plot 'data/experts-16-s1-share.dat' u 1:2:(0.5):(0.5):3 w boxxyerror fs solid 1.0 noborder fc palette notitle
reset
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 560,280 noenhanced font ',10'
} else {
  set terminal png size 560,280 noenhanced
}
set datafile missing '?'
set output 'heatmap-experts-16-s2.png'
set title 'experts-16-s2: share of token-expert pairs per expert (last 10% of steps)'
set grid
set cbrange [0:0.5]
unset grid
set xlabel 'expert'
set ylabel 'MoE layer'
set palette defined (0 'white', 1 '#fdd49e', 2 '#ef6548', 3 '#7f0000')
set xrange [-0.5:15.5]
set yrange [-0.5:3.5]
set ytics ('0' 0, '1' 1, '2' 2, '3' 3)
set xtics 1
plot 'data/experts-16-s2-share.dat' u 1:2:(0.5):(0.5):3 w boxxyerror fs solid 1.0 noborder fc palette notitle
reset
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 560,280 noenhanced font ',10'
} else {
  set terminal png size 560,280 noenhanced
}
set datafile missing '?'
set output 'heatmap-experts-16-s3.png'
set title 'experts-16-s3: share of token-expert pairs per expert (last 10% of steps)'
set grid
set cbrange [0:0.5]
unset grid
set xlabel 'expert'
set ylabel 'MoE layer'
set palette defined (0 'white', 1 '#fdd49e', 2 '#ef6548', 3 '#7f0000')
set xrange [-0.5:15.5]
set yrange [-0.5:3.5]
set ytics ('0' 0, '1' 1, '2' 2, '3' 3)
set xtics 1
plot 'data/experts-16-s3-share.dat' u 1:2:(0.5):(0.5):3 w boxxyerror fs solid 1.0 noborder fc palette notitle
reset
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 560,280 noenhanced font ',10'
} else {
  set terminal png size 560,280 noenhanced
}
set datafile missing '?'
set output 'heatmap-experts-32-s1.png'
set title 'experts-32-s1: share of token-expert pairs per expert (last 10% of steps)'
set grid
set cbrange [0:0.5]
unset grid
set xlabel 'expert'
set ylabel 'MoE layer'
set palette defined (0 'white', 1 '#fdd49e', 2 '#ef6548', 3 '#7f0000')
set xrange [-0.5:31.5]
set yrange [-0.5:3.5]
set ytics ('0' 0, '1' 1, '2' 2, '3' 3)
plot 'data/experts-32-s1-share.dat' u 1:2:(0.5):(0.5):3 w boxxyerror fs solid 1.0 noborder fc palette notitle
reset
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 560,280 noenhanced font ',10'
} else {
  set terminal png size 560,280 noenhanced
}
set datafile missing '?'
set output 'heatmap-experts-32-s2.png'
set title 'experts-32-s2: share of token-expert pairs per expert (last 10% of steps)'
set grid
set cbrange [0:0.5]
unset grid
set xlabel 'expert'
set ylabel 'MoE layer'
set palette defined (0 'white', 1 '#fdd49e', 2 '#ef6548', 3 '#7f0000')
set xrange [-0.5:31.5]
set yrange [-0.5:3.5]
set ytics ('0' 0, '1' 1, '2' 2, '3' 3)
plot 'data/experts-32-s2-share.dat' u 1:2:(0.5):(0.5):3 w boxxyerror fs solid 1.0 noborder fc palette notitle
reset
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 560,280 noenhanced font ',10'
} else {
  set terminal png size 560,280 noenhanced
}
set datafile missing '?'
set output 'heatmap-experts-32-s3.png'
set title 'experts-32-s3: share of token-expert pairs per expert (last 10% of steps)'
set grid
set cbrange [0:0.5]
unset grid
set xlabel 'expert'
set ylabel 'MoE layer'
set palette defined (0 'white', 1 '#fdd49e', 2 '#ef6548', 3 '#7f0000')
set xrange [-0.5:31.5]
set yrange [-0.5:3.5]
set ytics ('0' 0, '1' 1, '2' 2, '3' 3)
plot 'data/experts-32-s3-share.dat' u 1:2:(0.5):(0.5):3 w boxxyerror fs solid 1.0 noborder fc palette notitle
reset
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 760,480 noenhanced font ',10'
} else {
  set terminal png size 760,480 noenhanced
}
set datafile missing '?'
set output 'experts.png'
set title 'Validation loss vs number of experts (fixed active parameters per token)'
set grid
set xrange [2.66667:48]
set logscale x 2
set xlabel 'routed experts per MoE layer'
set ylabel 'validation loss (nats/token)'
set key top right
plot 'data/experts.dat' u 1:2:3 w yerrorlines lw 2 pt 7 t 'MoE (mean ± std over seeds)', 1.738562 w l dt 2 lc 'black' t 'dense baseline, same active FLOPs'
