// Package procstat reads what the bench measures about a front from Linux's
// /proc: the CPU time and memory of a process and of every process below
// it, since nginx serves from worker processes its master forked.
package procstat
