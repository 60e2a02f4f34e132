using System.Runtime.InteropServices;
using System.Text;
using static TorchSharp.torch;

namespace CondenseCluster.Shared.Model;

/// <summary>
/// The masks of a configuration, or of a saved replica state, worked out without building a TorchSharp model (the
/// coordinator decides masks but trains nothing): the values <see cref="ModelCondensing.Masks"/> gives for that model.
/// </summary>
public static class LayerMasks
{
    /// <summary>A new model's masks: stage 0 and every column kept, [G, in] per learned group convolution in network order.</summary>
    public static IReadOnlyList<LayerMask> Initial(CondenseNetConfig config) =>
        Layers(config).Select(l =>
        {
            var kept = new bool[l.Groups, l.Inputs];
            for (int g = 0; g < l.Groups; g++)
                for (int j = 0; j < l.Inputs; j++)
                    kept[g, j] = true;
            return new LayerMask(0, kept);
        }).ToArray();

    /// <summary>
    /// The masks held in a replica state of a model of <paramref name="config"/>: TorchSharp's <c>Module.save</c> of the
    /// model, possibly followed by more (the optimizer's buffers, as the training engine's SaveState writes them; like
    /// <c>Module.load</c>, this reads the model's part only). Each learned layer's mask and stage are read from its
    /// <c>_mask</c> and <c>_stage</c> entries, as the layer reads them. A truncated state, or one of another model, throws
    /// an <see cref="InvalidDataException"/> naming the entry and the byte where it went wrong.
    /// </summary>
    public static IReadOnlyList<LayerMask> FromState(CondenseNetConfig config, byte[] state)
    {
        var layers = Layers(config).ToArray();
        var entries = StateDict.Read(state);
        int held = entries.Keys.Count(name => name.EndsWith("." + LearnedGroupConv.MaskEntry, StringComparison.Ordinal));
        if (held != layers.Length)
            throw Invalid($"the replica state holds {held} learned group convolutions, a model of {config} has {layers.Length}");

        ReadOnlySpan<float> Floats(string name, params long[] shape)
        {
            if (!entries.TryGetValue(name, out var entry))
                throw Invalid($"the replica state has no entry '{name}': it is not the state of a model of {config}");
            if (entry.Type != ScalarType.Float32 || !entry.Shape.SequenceEqual(shape))
                throw Invalid($"entry '{name}' of the replica state is {entry.Type} [{string.Join(", ", entry.Shape)}], " +
                    $"a model of {config} has {ScalarType.Float32} [{string.Join(", ", shape)}]");
            return MemoryMarshal.Cast<byte, float>(state.AsSpan(entry.Offset, entry.Length));
        }

        return layers.Select(l => new LayerMask(
            (int)Floats($"{l.Name}.{LearnedGroupConv.StageEntry}", 1)[0],
            DropCriterion.KeptColumns(Floats($"{l.Name}.{LearnedGroupConv.MaskEntry}", l.Outputs, l.Inputs, 1, 1), l.Inputs, l.Groups))).ToArray();
    }

    /// <summary>Each learned group convolution's state-dict prefix and shape, in network order, as <see cref="CondenseNet"/> builds them.</summary>
    static IEnumerable<(string Name, int Groups, int Inputs, int Outputs)> Layers(CondenseNetConfig config)
    {
        config.Validate();
        return config.DenseLayers().Select(d => ($"{d.Name}.conv_1", config.Group1x1, d.InChannels, d.Bottleneck));
    }

    /// <summary>Where one tensor of a saved state dict lies: element type, shape, and its bytes in the state.</summary>
    readonly record struct Entry(ScalarType Type, long[] Shape, int Offset, int Length);

    /// <summary>
    /// Reads the layout of TorchSharp's <c>Module.save</c> (TorchSharp's TensorExtensionMethods.Save): a LEB128 count of
    /// entries, then per entry its name (a <see cref="BinaryWriter"/> string), LEB128 element type, rank and sizes, and
    /// the elements' raw bytes.
    /// </summary>
    sealed class StateDict(byte[] bytes)
    {
        int position;
        string reading = "the number of entries";

        public static Dictionary<string, Entry> Read(byte[] bytes) => new StateDict(bytes).Entries();

        Dictionary<string, Entry> Entries()
        {
            // Every entry takes bytes, so a damaged count ends in a truncation error, not in a long loop.
            long count = Number();
            var entries = new Dictionary<string, Entry>();
            for (int i = 0; i < count; i++)
            {
                reading = $"the name of entry {i}";
                string name = Encoding.UTF8.GetString(Take((int)Number(int.MaxValue)));
                reading = $"entry {i} ('{name}')";
                long code = Number();
                var type = (ScalarType)(sbyte)code;
                if (code > sbyte.MaxValue || ElementSize(type) is not long size)
                    throw Invalid($"{reading} has element type {code}, which is none that TorchSharp saves");
                var shape = new long[Number(64)];
                for (int d = 0; d < shape.Length; d++) shape[d] = Number();
                // Saturating product: sizes read from a damaged state must not overflow.
                foreach (long s in shape) size = s == 0 || size == 0 ? 0 : size > bytes.Length / s ? long.MaxValue : size * s;
                if (size > bytes.Length)
                    throw Invalid($"{reading} is {type} [{string.Join(", ", shape)}], more bytes than the state's {bytes.Length}");
                int offset = position;
                Take((int)size);
                if (!entries.TryAdd(name, new Entry(type, shape, offset, (int)size)))
                    throw Invalid($"{reading} appears twice");
            }
            return entries;
        }

        /// <summary>A LEB128 number (TorchSharp's encoding, and <see cref="BinaryWriter"/>'s for string lengths) of at most <paramref name="max"/>.</summary>
        long Number(long max = long.MaxValue)
        {
            int start = position;
            long value = 0;
            for (int shift = 0; shift < 63; shift += 7)
            {
                byte b = Take(1)[0];
                value |= (long)(b & 0x7f) << shift;
                if (b < 0x80)
                    return value <= max ? value : throw Invalid($"{reading} has the number {value} at byte {start}, at most {max} is possible");
            }
            throw Invalid($"{reading} has no valid number at byte {start}");
        }

        ReadOnlySpan<byte> Take(int length)
        {
            if (length > bytes.Length - position)
                throw Invalid($"the state ends at byte {bytes.Length} in {reading}, which needs {length} bytes from byte {position}: it is truncated");
            position += length;
            return bytes.AsSpan(position - length, length);
        }
    }

    static InvalidDataException Invalid(string problem) => new($"cannot read the masks of a replica state: {problem}");

    static long? ElementSize(ScalarType type) => type switch
    {
        ScalarType.Byte or ScalarType.Int8 or ScalarType.Bool => 1,
        ScalarType.Int16 or ScalarType.Float16 or ScalarType.BFloat16 => 2,
        ScalarType.Int32 or ScalarType.Float32 => 4,
        ScalarType.Int64 or ScalarType.Float64 or ScalarType.ComplexFloat32 => 8,
        ScalarType.ComplexFloat64 => 16,
        _ => null,
    };
}
