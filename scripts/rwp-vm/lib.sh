# shellcheck shell=bash
# shellcheck disable=SC2034 # RWP_VM_DIR, REPO_ROOT, WORK are for the scripts that source this
# Shared by scripts/test-rwp-vm and the scripts/rwp-vm/ steps (sourced, not run): logging,
# host packages, the Debian mirror.

RWP_VM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$RWP_VM_DIR/../.." && pwd)
# Cache + scratch directory shared by the steps.
WORK=${RWP_VM_WORKDIR:-$REPO_ROOT/.build-rwp-vm}
# Log lines say which script speaks; the driver sets RWP_VM_LOG_TAG=test-rwp-vm for its steps.
LOG_TAG=${RWP_VM_LOG_TAG:-$(basename "$0")}

log() { printf '[%s] %s\n' "$LOG_TAG" "$*" >&2; }
die() { log "error: $1"; exit "${2:-1}"; }   # die MESSAGE [EXIT_STATUS]

pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

HOST_APT_UPDATED=0
host_apt_update() {
    if ((HOST_APT_UPDATED == 0)); then
        log "apt-get update"
        apt-get update -qq >&2
        HOST_APT_UPDATED=1
    fi
}

# Installs (apt-get, no recommends) whichever of the named Debian packages are missing.
need_packages() {
    local missing=() pkg
    for pkg in "$@"; do
        pkg_installed "$pkg" || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    [[ $EUID -eq 0 ]] || die "missing packages ${missing[*]}; run as root to install them" 2
    host_apt_update
    log "apt-get install ${missing[*]}"
    # --no-install-recommends: qemu's recommends (GUI, OVMF, block extras) are not needed.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# The Debian archive URL this machine's apt already uses (no host is hard-coded here). apt knows
# the Origin/Label of each configured repository from its Release file: the main archive is
# "Debian"/"Debian" (the security archive is labelled "Debian-Security").
# shellcheck disable=SC2016 # $(REPO_URI) etc. are apt's format fields, not shell
find_debian_mirror() {
    local uri
    uri=$(apt-get indextargets --format '$(REPO_URI)|$(ORIGIN)|$(LABEL)' 2>/dev/null |
        awk -F'|' '$2 == "Debian" && $3 == "Debian" { print $1; exit }')
    if [[ -z $uri ]]; then
        # Release files not downloaded yet (fresh machine): fetch them and ask again.
        host_apt_update
        uri=$(apt-get indextargets --format '$(REPO_URI)|$(ORIGIN)|$(LABEL)' 2>/dev/null |
            awk -F'|' '$2 == "Debian" && $3 == "Debian" { print $1; exit }')
    fi
    if [[ -z $uri ]]; then
        # Last resort: the first configured URI whose path ends in /debian.
        uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
            grep -oE '(https?|ftp)://[^][ ]+/debian/?( |$)' | head -n1 | tr -d ' ')
    fi
    [[ -n $uri ]] || die "could not find the Debian mirror in this machine's apt configuration"
    printf '%s\n' "${uri%/}/"
}
