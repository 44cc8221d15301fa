#!/usr/bin/env bash
# Builds the binaries of the real-Kubernetes test cluster (package test/k8s):
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok, plus
# kwok's Stage YAMLs, into ${RUNBOOKBOT_K8S_BIN:-$HOME/.cache/runbookbot/k8s/v1.37.2}.
#
# Idempotent: when the directory already holds a complete build of these
# versions (the .complete marker) it does nothing. A partial build resumes:
# each binary already present is kept. Builds run one at a time (a
# kube-apiserver build peaks near 3 GB RSS); ~16 min from cold Go caches on 2
# cores, ~1 min with a warm build cache.
#
# Everything is built in scratch modules under a temp dir, never in the
# project's go.mod.
set -euo pipefail

K8S_VERSION=v1.37.2
STAGING_VERSION=v0.37.2
ETCD_VERSION=v3.6.16
KWOK_VERSION=v0.8.0
STAMP="kubernetes=${K8S_VERSION} staging=${STAGING_VERSION} etcd=${ETCD_VERSION} kwok=${KWOK_VERSION} build=2"

BIN_DIR="${RUNBOOKBOT_K8S_BIN:-$HOME/.cache/runbookbot/k8s/${K8S_VERSION}}"
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

log() { echo "k8s/build.sh: $*"; }
die() { echo "k8s/build.sh: FAILED: $*" >&2; exit 1; }

complete() {
  [ -f "$BIN_DIR/.complete" ] && [ "$(cat "$BIN_DIR/.complete")" = "$STAMP" ] || return 1
  local b
  for b in "${BINARIES[@]}"; do [ -x "$BIN_DIR/$b" ] || return 1; done
  [ -s "$BIN_DIR/kwok-stages.yaml" ] || return 1
}

if complete; then
  log "binaries up to date in $BIN_DIR ($STAMP)"
  exit 0
fi

command -v go >/dev/null 2>&1 || die "go is not on PATH"
mkdir -p "$BIN_DIR" || die "cannot create $BIN_DIR"

# One builder at a time (two test packages may call this together).
exec 9>"$BIN_DIR/.lock"
if ! flock -n 9; then
  log "another build holds $BIN_DIR/.lock; waiting for it"
  flock 9
fi
if complete; then
  log "binaries up to date in $BIN_DIR (built by another process)"
  exit 0
fi

# A stamp of other versions means the binaries present are stale.
if [ -f "$BIN_DIR/.complete" ] && [ "$(cat "$BIN_DIR/.complete")" != "$STAMP" ]; then
  log "stale build ($(cat "$BIN_DIR/.complete")); rebuilding"
  for b in "${BINARIES[@]}"; do rm -f "$BIN_DIR/$b"; done
  rm -rf "$BIN_DIR/stages" "$BIN_DIR/kwok-stages.yaml" "$BIN_DIR/.complete"
fi
rm -f "$BIN_DIR/.complete"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/runbookbot-k8s-build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false GOWORK=off CGO_ENABLED=0

TOTAL_START=$SECONDS
log "building into $BIN_DIR ($STAMP); scratch dir $WORK"

step() { # step WHAT: prints the time since STEP_START
  log "$1 in $(( SECONDS - STEP_START ))s"
}

# --- etcd -------------------------------------------------------------------
if [ ! -x "$BIN_DIR/etcd" ]; then
  STEP_START=$SECONDS
  log "building etcd ${ETCD_VERSION}"
  mkdir -p "$WORK/etcd"
  (
    cd "$WORK/etcd"
    go mod init runbookbot-k8s-build/etcd >/dev/null 2>&1
    go get "go.etcd.io/etcd/server/v3@${ETCD_VERSION}"
    go build -trimpath -ldflags "-s -w" -o "$BIN_DIR/etcd.tmp" go.etcd.io/etcd/server/v3
  ) || die "building etcd ${ETCD_VERSION}"
  mv "$BIN_DIR/etcd.tmp" "$BIN_DIR/etcd"
  step "built etcd"
fi

# --- kube-apiserver, kube-controller-manager, kube-scheduler -----------------
need_kube=0
for b in kube-apiserver kube-controller-manager kube-scheduler; do
  [ -x "$BIN_DIR/$b" ] || need_kube=1
done
if [ "$need_kube" = 1 ]; then
  STEP_START=$SECONDS
  log "resolving k8s.io/kubernetes ${K8S_VERSION} (module download ~1 GB from cold)"
  mkdir -p "$WORK/kube"
  cd "$WORK/kube"
  go mod init runbookbot-k8s-build/kube >/dev/null 2>&1
  gomod="$(go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')"
  [ -f "$gomod" ] || die "go mod download k8s.io/kubernetes@${K8S_VERSION} gave no go.mod"
  # kubernetes' go.mod points its staging modules (k8s.io/<name> v0.0.0) at
  # ./staging, which the module zip lacks: pin them to their published tags.
  staging="$(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\./staging/.*#\1#p' "$gomod" | sort -u)"
  [ -n "$staging" ] || die "found no staging replace directives in $gomod"
  args=()
  for m in $staging; do args+=("-replace=$m=$m@${STAGING_VERSION}"); done
  go mod edit "${args[@]}"
  log "pinned $(echo "$staging" | wc -l) staging modules to ${STAGING_VERSION}"
  go get "k8s.io/kubernetes/cmd/kube-apiserver@${K8S_VERSION}" \
    "k8s.io/kubernetes/cmd/kube-controller-manager@${K8S_VERSION}" \
    "k8s.io/kubernetes/cmd/kube-scheduler@${K8S_VERSION}" || die "go get k8s.io/kubernetes@${K8S_VERSION}"
  step "resolved kubernetes modules"
  minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  ld="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $p.gitVersion=${K8S_VERSION} -X $p.gitMajor=1 -X $p.gitMinor=${minor} -X $p.gitTreeState=clean"
  done
  for b in kube-apiserver kube-controller-manager kube-scheduler; do
    [ -x "$BIN_DIR/$b" ] && continue
    STEP_START=$SECONDS
    log "building $b ${K8S_VERSION}"
    go build -trimpath -ldflags "$ld" -o "$BIN_DIR/$b.tmp" "k8s.io/kubernetes/cmd/$b" || die "building $b"
    mv "$BIN_DIR/$b.tmp" "$BIN_DIR/$b"
    step "built $b"
  done
  cd /
fi

# --- kwok and its stages -------------------------------------------------------
if [ ! -x "$BIN_DIR/kwok" ]; then
  STEP_START=$SECONDS
  log "building kwok ${KWOK_VERSION}"
  mkdir -p "$WORK/kwok-bin"
  GOBIN="$WORK/kwok-bin" go install -trimpath \
    -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION}" \
    "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}" || die "go install sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}"
  mv "$WORK/kwok-bin/kwok" "$BIN_DIR/kwok"
  step "built kwok"
fi

kwokdir="$(go mod download -json "sigs.k8s.io/kwok@${KWOK_VERSION}" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')"
[ -d "$kwokdir/kustomize/stage" ] || die "kwok ${KWOK_VERSION} module has no kustomize/stage"
STAGES=(
  node/fast/node-initialize.yaml
  node/heartbeat-with-lease/node-heartbeat-with-lease.yaml
  pod/fast/pod-ready.yaml
  pod/fast/pod-complete.yaml
  pod/fast/pod-delete.yaml
)
rm -rf "$BIN_DIR/stages"
: > "$BIN_DIR/kwok-stages.yaml.tmp"
for s in "${STAGES[@]}"; do
  [ -f "$kwokdir/kustomize/stage/$s" ] || die "kwok stage $s missing from $kwokdir"
  mkdir -p "$BIN_DIR/stages/$(dirname "$s")"
  cp "$kwokdir/kustomize/stage/$s" "$BIN_DIR/stages/$s"
  chmod u+w "$BIN_DIR/stages/$s"
  { echo "---"; cat "$kwokdir/kustomize/stage/$s"; echo; } >> "$BIN_DIR/kwok-stages.yaml.tmp"
done
mv "$BIN_DIR/kwok-stages.yaml.tmp" "$BIN_DIR/kwok-stages.yaml"
log "collected ${#STAGES[@]} kwok stages into $BIN_DIR/kwok-stages.yaml"

for b in "${BINARIES[@]}"; do
  "$BIN_DIR/$b" --version >/dev/null 2>&1 || "$BIN_DIR/$b" --help >/dev/null 2>&1 \
    || die "$BIN_DIR/$b does not run"
done
echo "$STAMP" > "$BIN_DIR/.complete"
log "done in $(( SECONDS - TOTAL_START ))s: $(du -sh "$BIN_DIR" | cut -f1) in $BIN_DIR"
