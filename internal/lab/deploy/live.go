package deploy

// LiveVM returns the handle of VM id when it runs under this daemon, for
// operations on running guests outside deploy (live snapshots). The
// caller holds the configuration's lock, so the VM is not undeployed
// meanwhile.
func (d *Deployments) LiveVM(id int64) (VM, bool) {
	rv := d.vms.get(id)
	if rv == nil {
		return nil, false
	}
	return rv.vm, true
}
