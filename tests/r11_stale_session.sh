#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Scenario 11: a stale session (CKR_SESSION_HANDLE_INVALID) or a library
# that lost its initialisation (CKR_CRYPTOKI_NOT_INITIALIZED) once -> the
# provider reopens, logs in again and retries once: the handshake succeeds.
# The same failure every time -> reported, not looped (one retry, one login).
# timeout: 120
. "$(dirname "$0")/lib.sh"

kh_r_shim_server

# 1. The session the provider holds was closed behind its back.
kh_r_recovers "$port" "a stale session" 'fail C_SignInit CKR_SESSION_HANDLE_INVALID at=1 do=close'
[ "$(kh_shim_count C_SignInit CKR_SESSION_HANDLE_INVALID)" = 1 ] || kh_fail "fault not hit"
[ "$(kh_shim_count C_OpenSession CKR_OK)" -ge 1 ] || kh_fail "no new session was opened"
[ "$(kh_shim_count C_Sign CKR_OK)" = 1 ] || kh_fail "expected exactly one successful C_Sign"
kh_log "stale session: reopened, retried once, handshake ok"

# 2. Same on C_Sign itself (the operation was initialised on the dead session).
kh_r_recovers "$port" "a session lost at C_Sign" 'fail C_Sign CKR_SESSION_HANDLE_INVALID at=1 do=close'

# 3. The library was finalised behind the provider's back: C_Initialize
#    again, new session, one new login, retry.
kh_r_recovers "$port" "CRYPTOKI_NOT_INITIALIZED" 'fail C_SignInit CKR_CRYPTOKI_NOT_INITIALIZED at=1 do=finalize'
[ "$(kh_shim_count C_Initialize CKR_OK)" -ge 1 ] || kh_fail "C_Initialize was not called again"
logins=$(kh_shim_count C_Login)
[ "$logins" -le 1 ] || kh_fail "$logins logins to recover (want at most one)"
kh_log "lost initialisation: re-initialised, $logins login, handshake ok"

# 4. Stale every time: the handshake fails cleanly after one retry.
kh_r_refused "$port" "$srv" "with every session stale" \
    'fail C_SignInit CKR_SESSION_HANDLE_INVALID'
tries=$(kh_shim_count C_SignInit)
logins=$(kh_shim_count C_Login)
kh_log "persistent fault: $tries C_SignInit, $logins C_Login in one handshake"
[ "$tries" -ge 1 ] && [ "$tries" -le 2 ] || kh_fail "$tries C_SignInit calls in one handshake: want one try + one retry"
[ "$logins" -le 1 ] || kh_fail "$logins C_Login calls in one failing handshake"

# 5. Same for CRYPTOKI_NOT_INITIALIZED every time.
kh_r_refused "$port" "$srv" "while the library never initialises" \
    'fail C_SignInit CKR_CRYPTOKI_NOT_INITIALIZED'
tries=$(kh_shim_count C_SignInit)
[ "$tries" -le 2 ] || kh_fail "$tries C_SignInit calls in one handshake: want one try + one retry"

# And afterwards all is well again.
kh_shim_set
kh_r_handshake "$port" -tls1_3 || { cat "$T/hs.out"; kh_fail "no handshake after the faults ended"; }
kh_log "scenario 11 ok"
