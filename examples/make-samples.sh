#!/usr/bin/env bash
# Regenerates the sample node layout under examples/logs/ deterministically.
#
#   logs/containers/<pod>_<namespace>_<container>-<container id>.log   (relative symlinks)
#   logs/pods/<namespace>_<pod>_<pod uid>/<container>/0.log[.<rotation timestamp>[.gz]]
#
# Three containers: an nginx (CRI, rotated + gzipped siblings, stdout/stderr), a Java service
# (CRI, stack trace, P/F partial pieces) and a Python worker (docker json-file, traceback,
# partial chunk). `gzip -n` keeps the .gz byte-identical across runs. Run from anywhere.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

rm -rf logs
mkdir -p logs/containers logs/pods

# container_id NAME -> 64 hex chars derived from the name (stable, no randomness).
container_id() { printf '%s' "kubeship-example/$1" | sha256sum | cut -c1-64; }

# add_container NS POD UID CONTAINER -> prints the container's log directory; makes the symlink.
add_container() {
  local ns=$1 pod=$2 uid=$3 name=$4 id
  id=$(container_id "$ns/$pod/$name")
  local rel="pods/${ns}_${pod}_${uid}/${name}"
  mkdir -p "logs/$rel"
  ln -s "../$rel/0.log" "logs/containers/${pod}_${ns}_${name}-${id}.log"
  printf '%s\n' "logs/$rel"
}

# cri TIME STREAM TAG MESSAGE   (containerd / CRI-O framing)
cri() { printf '%s %s %s %s\n' "$1" "$2" "$3" "$4"; }

json_escape() {
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\t'/\\t}
  printf '%s' "$s"
}

# docker TIME STREAM MESSAGE [partial]   (docker json-file framing; partial: no trailing \n)
docker() {
  local nl='\n'
  [[ ${4:-} == partial ]] && nl=''
  printf '{"log":"%s%s","stream":"%s","time":"%s"}\n' "$(json_escape "$3")" "$nl" "$2" "$1"
}

# nginx access line for request N at TIME (HH:MM:SS)
access() {
  printf '10.42.0.17 - - [22/Nov/2026:%s +0000] "GET /items/%s HTTP/1.1" 200 %s "-" "curl/8.5.0"' \
    "$2" "$1" $((600 + $1))
}

# --- nginx: CRI, rotated twice (the older rotation gzipped) -----------------------------------
dir=$(add_container default web-5f7c9d8b4-q2x7m 3f1c2a9e-8b7d-4c6e-9a51-0d2e4f6a8b10 nginx)
{
  for i in 1 2 3 4; do
    cri "2026-11-22T09:59:0${i}.100000000Z" stdout F "$(access "$i" "09:59:0$i")"
  done
} > "$dir/0.log.20261122-100000"
gzip -n -9 "$dir/0.log.20261122-100000"
{
  for i in 5 6; do
    cri "2026-11-22T10:10:0${i}.200000000Z" stdout F "$(access "$i" "10:10:0$i")"
  done
  cri "2026-11-22T10:10:07.000000000Z" stderr F \
    '2026/11/22 10:10:07 [warn] 29#29: *6 an upstream response is buffered to a temporary file /var/cache/nginx/proxy_temp/1/00/0000000001 while reading upstream'
  for i in 7 8; do
    cri "2026-11-22T10:10:0${i}.300000000Z" stdout F "$(access "$i" "10:10:0$i")"
  done
} > "$dir/0.log.20261122-101500"
{
  for i in 9 10; do
    cri "2026-11-22T10:20:$((i + 10)).400000000Z" stdout F "$(access "$i" "10:20:$((i + 10))")"
  done
  cri "2026-11-22T10:20:21.000000000Z" stderr F \
    '2026/11/22 10:20:21 [error] 29#29: *11 open() "/usr/share/nginx/html/favicon.ico" failed (2: No such file or directory)'
  for i in 11 12; do
    cri "2026-11-22T10:20:$((i + 11)).500000000Z" stdout F "$(access "$i" "10:20:$((i + 11))")"
  done
} > "$dir/0.log"

# --- Java service: CRI, partial pieces and a stack trace ---------------------------------------
dir=$(add_container shop checkout-7d4b9c-xk2lp 7a9d41c2-5e3b-4f08-b6d2-91c4e8a7f3d5 app)
{
  cri 2026-11-22T10:20:00.101000000Z stdout F \
    '2026-11-22 10:20:00.101  INFO 1 --- [           main] c.e.checkout.CheckoutApplication         : Started CheckoutApplication in 3.412 seconds'
  cri 2026-11-22T10:20:01.250000000Z stdout P \
    '2026-11-22 10:20:01.250  INFO 1 --- [nio-8080-exec-1] c.e.checkout.OrderController             : order A-1001 accepted: {"items":[{"sku":"KB-001","qty":1},'
  cri 2026-11-22T10:20:01.250000000Z stdout P '{"sku":"MS-204","qty":2},{"sku":"HD-512","qty":1}],'
  cri 2026-11-22T10:20:01.250000000Z stdout F '"total":"184.97","currency":"EUR"}'
  cri 2026-11-22T10:20:02.003000000Z stderr F \
    '2026-11-22 10:20:02.003 ERROR 1 --- [nio-8080-exec-2] c.e.checkout.PaymentService              : charge failed for order A-1001'
  cri 2026-11-22T10:20:02.003100000Z stderr F 'java.lang.IllegalStateException: card declined'
  cri 2026-11-22T10:20:02.003200000Z stderr F $'\tat com.example.checkout.PaymentService.charge(PaymentService.java:42)'
  cri 2026-11-22T10:20:02.003300000Z stderr F $'\tat com.example.checkout.OrderController.pay(OrderController.java:88)'
  cri 2026-11-22T10:20:02.003400000Z stderr F 'Caused by: java.io.IOException: connection reset by peer'
  cri 2026-11-22T10:20:02.003500000Z stderr F $'\tat com.example.payments.HttpClient.post(HttpClient.java:117)'
  cri 2026-11-22T10:20:02.003600000Z stderr F $'\t... 23 more'
  cri 2026-11-22T10:20:03.500000000Z stdout F \
    '2026-11-22 10:20:03.500  WARN 1 --- [nio-8080-exec-3] c.e.checkout.PaymentService              : retrying order A-1001 with backup gateway'
  cri 2026-11-22T10:20:04.020000000Z stdout F \
    '2026-11-22 10:20:04.020  INFO 1 --- [nio-8080-exec-3] c.e.checkout.OrderController             : order A-1001 paid'
} > "$dir/0.log"

# --- Python worker: docker json-file, a traceback and a partial chunk --------------------------
dir=$(add_container batch report-worker-6b8f5c-r9zt4 c5e8b2d4-1f6a-4a93-8e7c-2b9d0f4a6c81 worker)
{
  docker 2026-11-22T10:30:00.001000000Z stdout '2026-11-22 10:30:00,001 INFO worker: started, queue=reports'
  docker 2026-11-22T10:30:01.114000000Z stdout '2026-11-22 10:30:01,114 INFO worker: picked job 41'
  docker 2026-11-22T10:30:01.200000000Z stdout \
    '2026-11-22 10:30:01,200 INFO worker: job 41 payload: {"report":"daily-sales","regions":["eu-west-1","us-east-1",' partial
  docker 2026-11-22T10:30:01.200000000Z stdout '"ap-south-1"],"format":"csv"}'
  docker 2026-11-22T10:30:02.502000000Z stderr '2026-11-22 10:30:02,502 ERROR worker: job 41 failed'
  docker 2026-11-22T10:30:02.502100000Z stderr 'Traceback (most recent call last):'
  docker 2026-11-22T10:30:02.502200000Z stderr '  File "/app/worker.py", line 42, in run'
  docker 2026-11-22T10:30:02.502300000Z stderr '    result = handle(job)'
  docker 2026-11-22T10:30:02.502400000Z stderr '  File "/app/worker.py", line 27, in handle'
  docker 2026-11-22T10:30:02.502500000Z stderr '    raise ValueError(f"invalid payload for job {job.id}")'
  docker 2026-11-22T10:30:02.502600000Z stderr 'ValueError: invalid payload for job 41'
  docker 2026-11-22T10:30:03.010000000Z stdout '2026-11-22 10:30:03,010 INFO worker: picked job 42'
  docker 2026-11-22T10:30:03.220000000Z stdout '2026-11-22 10:30:03,220 INFO worker: job 42 done in 0.21s'
} > "$dir/0.log"

echo "sample node layout written to $(pwd)/logs"
