package cli

// Printable is printable, for the tests of package cli_test.
var Printable = printable
