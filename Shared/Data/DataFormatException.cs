namespace CondenseCluster.Shared.Data;

/// <summary>
/// A data file that cannot be used as it is: wrong magic number, truncated, corrupt, a label out of range, an unreadable
/// image. The message names the file and the offset or record, so that the bad file can be found and replaced.
/// </summary>
public sealed class DataFormatException(string message) : Exception(message);
