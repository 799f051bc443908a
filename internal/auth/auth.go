// Package auth owns who a caller is and what they may do: password hashes
// (argon2id), API and session tokens, the literal table of roles, actions
// and share levels, the one decision function Decide, quotas, the login
// throttle and the identity a request carries. It is pure: no store, no
// HTTP; the api asks it and the store supplies its inputs.
package auth
