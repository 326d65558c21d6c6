using System.Reflection;
using System.Runtime.CompilerServices;

[assembly: AssemblyTitle("Fieldcrypt")]
[assembly: AssemblyDescription("Client-side field-level encryption of Kafka records (binding of libfieldcrypt_ffi)")]
[assembly: AssemblyVersion("0.1.0.0")]
// The tests' Kafka aid reuses the packed-record code and the fc_buf/fc_error declarations.
[assembly: InternalsVisibleTo("FieldcryptTests")]
// ...and so does the cross-language matrix peer (tests/XtestPeer.cs, built by run-tests.sh xtest-peer).
[assembly: InternalsVisibleTo("FieldcryptXtestPeer")]
