package wire

// Files travel in requests and answers, never as paths on the daemon's
// host (only the system administrator on the unix socket may name those,
// under serve --import-dir):
//
//	POST /api/v1/templates/upload?name=N[&format=F&cpus=C&memory_mib=M&cmdline=..&description=..&workspace=W&no_seed=1]
//	    multipart/form-data, streamed, parts in this order: PartDisk (one
//	    or more, in disk order), then PartKernel, PartInitrd and
//	    PartUserData (each optional, at most once).
//	    Each part carries its file name (the part's filename), its sha256
//	    (HeaderContentSHA256, hex, required) and its length (Content-Length,
//	    optional). 201 and the Template.
//	POST /api/v1/archives/upload?[name=NEW&map_network=OLD=NEW...&storage_lease=30d&workspace=W]
//	    the bundle as the body (ContentTypeBundle), with HeaderContentSHA256
//	    (required), Content-Length and HeaderFileName (optional). 202 and
//	    the import's Job.
//	GET /api/v1/archives/{name}/bundle
//	    the bundle as the body (ContentTypeBundle), streamed as the server
//	    reads the archive; its sha256 comes last, as the trailer
//	    HeaderContentSHA256. An export that fails half way cuts the
//	    connection, so a bundle without that trailer is incomplete.
//
// An upload's sha256 that does not match answers 400, a file larger than
// the server's limit (serve --max-upload) 413; neither leaves anything.
const (
	// HeaderContentSHA256 is a file's SHA-256, in hex.
	HeaderContentSHA256 = "X-Content-SHA256"
	// HeaderFileName is an uploaded bundle's file name (for messages).
	HeaderFileName = "X-File-Name"
	// ContentTypeBundle is the media type of a bundle (a tar file).
	ContentTypeBundle = "application/x-tar"

	// The parts of a template upload.
	PartDisk   = "disk"
	PartKernel = "kernel"
	PartInitrd = "initrd"
	// PartUserData is the template's cloud-init user-data (optional, at
	// most 64 KiB), after the disks.
	PartUserData = "user-data"
)
