package hypervisor

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of the times in /proc/PID/stat. The kernel exports
// them in USER_HZ, which is 100 on every Linux architecture QEMU runs on
// here (sysconf(_SC_CLK_TCK) answers the same constant).
const userHZ = 100

// ProcessCPUTime returns the CPU time process pid has used so far, user
// and system (utime + stime of /proc/PID/stat): for a QEMU process, the
// time its vCPU threads ran the guest plus its own emulation and I/O. It
// is read from the kernel, so it costs no QMP round trip and works while
// the guest is paused. A process that is gone is a not-exist error.
func ProcessCPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("cpu time of process %d: %w", pid, err)
	}
	// comm (field 2) may hold spaces and parentheses: count from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("cpu time of process %d: /proc stat without a command field", pid)
	}
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 13 {
		return 0, fmt.Errorf("cpu time of process %d: /proc stat has %d fields after the command", pid, len(fields))
	}
	var ticks uint64
	for _, f := range fields[11:13] { // fields 14 (utime) and 15 (stime)
		n, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("cpu time of process %d: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}
