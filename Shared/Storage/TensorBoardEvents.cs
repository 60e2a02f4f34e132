using System.Buffers.Binary;
using System.Net;
using CondenseCluster.Shared.Storage.TensorBoard;
using Google.Protobuf;

namespace CondenseCluster.Shared.Storage;

/// <summary>
/// Writes a TensorBoard events file: TFRecords of <see cref="Event"/>s, the first announcing the format version.
/// Each record is framed as: data length (uint64, little endian), masked CRC-32C of those 8 bytes, the data,
/// masked CRC-32C of the data. Not thread-safe; callers serialize writes.
/// </summary>
public sealed class TensorBoardEventWriter : IDisposable
{
    public const string FileVersion = "brain.Event:2";
    readonly FileStream stream;

    /// <summary>The events file being written.</summary>
    public string FilePath { get; }

    /// <summary>Creates <c>events.out.tfevents.&lt;unix seconds&gt;.&lt;hostname&gt;</c> in <paramref name="folder"/>.</summary>
    public TensorBoardEventWriter(string folder)
    {
        Directory.CreateDirectory(folder);
        var now = DateTimeOffset.UtcNow;
        string name = $"events.out.tfevents.{now.ToUnixTimeSeconds()}.{Dns.GetHostName()}";
        // Never append to another writer's file (a resume in the same second): TensorBoard reads every file whose
        // name contains "tfevents", so a suffix keeps both.
        for (int n = 0; ; n++)
        {
            string path = Path.Combine(folder, n == 0 ? name : $"{name}.{n}");
            try
            {
                stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.Read);
                FilePath = path;
                break;
            }
            catch (IOException) when (File.Exists(path)) { }
        }
        Write(new Event { WallTime = UnixSeconds(now), FileVersion = FileVersion });
    }

    /// <summary>One event holding <paramref name="scalars"/> at <paramref name="step"/>.</summary>
    public void WriteScalars(long step, IEnumerable<(string Tag, float Value)> scalars, DateTimeOffset? time = null)
    {
        var summary = new Summary();
        foreach (var (tag, value) in scalars) summary.Value.Add(new Summary.Types.Value { Tag = tag, SimpleValue = value });
        Write(new Event { WallTime = UnixSeconds(time ?? DateTimeOffset.UtcNow), Step = step, Summary = summary });
    }

    /// <summary>One text entry under <paramref name="tag"/> at <paramref name="step"/>, for TensorBoard's Text tab.</summary>
    public void WriteText(long step, string tag, string text, DateTimeOffset? time = null)
    {
        const int StringType = 7; // TensorFlow's DT_STRING
        var value = new Summary.Types.Value
        {
            Tag = tag,
            Metadata = new SummaryMetadata { PluginData = new SummaryMetadata.Types.PluginData { PluginName = "text" } },
            Tensor = new TensorProto { Dtype = StringType, TensorShape = new TensorShapeProto(), StringVal = { ByteString.CopyFromUtf8(text) } },
        };
        Write(new Event { WallTime = UnixSeconds(time ?? DateTimeOffset.UtcNow), Step = step, Summary = new Summary { Value = { value } } });
    }

    void Write(Event e)
    {
        byte[] data = e.ToByteArray();
        Span<byte> header = stackalloc byte[12], footer = stackalloc byte[4];
        BinaryPrimitives.WriteUInt64LittleEndian(header, (ulong)data.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(header[8..], Crc32C.Masked(header[..8]));
        BinaryPrimitives.WriteUInt32LittleEndian(footer, Crc32C.Masked(data));
        stream.Write(header);
        stream.Write(data);
        stream.Write(footer);
        // To the operating system, not to disk: a crashed process keeps every record written, and no step waits on an fsync.
        stream.Flush();
    }

    static double UnixSeconds(DateTimeOffset time) => (time.UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks) / (double)TimeSpan.TicksPerSecond;

    public void Dispose() => stream.Dispose();
}

/// <summary>Reads an events file back, verifying the framing and both CRCs of every record.</summary>
public static class TensorBoardEventReader
{
    const int HeaderLength = 12, FooterLength = 4;

    /// <summary>
    /// All events of <paramref name="path"/> in order. A bad CRC or a truncated record throws
    /// <see cref="InvalidDataException"/> naming the file, the record (counted from 1) and its byte offset.
    /// </summary>
    public static IReadOnlyList<Event> Read(string path)
    {
        byte[] bytes = File.ReadAllBytes(path);
        var events = new List<Event>();
        int offset = 0;
        for (int record = 1; offset < bytes.Length; record++)
        {
            InvalidDataException Bad(string what) => new($"{path}: record {record} at byte {offset}: {what}");
            var rest = bytes.AsSpan(offset);
            if (rest.Length < HeaderLength)
                throw Bad($"truncated header ({rest.Length} of {HeaderLength} bytes) — the file was cut short");
            if (BinaryPrimitives.ReadUInt32LittleEndian(rest[8..]) != Crc32C.Masked(rest[..8]))
                throw Bad("length CRC mismatch — the file is corrupt");
            ulong length = BinaryPrimitives.ReadUInt64LittleEndian(rest);
            int available = Math.Max(0, rest.Length - HeaderLength - FooterLength);
            if (length > (ulong)available)
                throw Bad($"truncated: {length} data bytes announced, {available} present — the file was cut short");
            var data = rest.Slice(HeaderLength, (int)length);
            if (BinaryPrimitives.ReadUInt32LittleEndian(rest[(HeaderLength + (int)length)..]) != Crc32C.Masked(data))
                throw Bad("data CRC mismatch — the file is corrupt");
            try { events.Add(Event.Parser.ParseFrom(data)); }
            catch (InvalidProtocolBufferException e) { throw Bad($"not an Event ({e.Message})"); }
            offset += HeaderLength + (int)length + FooterLength;
        }
        return events;
    }
}
