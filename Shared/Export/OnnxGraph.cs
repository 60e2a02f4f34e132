using CondenseCluster.Shared.Export.Onnx;
using Google.Protobuf;
using TorchSharp;
using static TorchSharp.torch;

namespace CondenseCluster.Shared.Export;

/// <summary>
/// Builds an ONNX graph node by node. Each node's output carries the node's name, so a layer's name in the model is the
/// name of the value it computes; weights become initializers with their state-dict names.
/// </summary>
public sealed class OnnxGraph(string name)
{
    readonly GraphProto graph = new() { Name = name };
    readonly HashSet<string> shapes = [];

    public GraphProto Proto => graph;

    /// <summary>A float32 or int64 tensor as an initializer, stored as raw little-endian bytes.</summary>
    public string Initializer(string name, Tensor values)
    {
        using var cpu = values.detach().cpu().contiguous();
        var type = cpu.dtype switch
        {
            ScalarType.Float32 => TensorProto.Types.DataType.Float,
            ScalarType.Int64 => TensorProto.Types.DataType.Int64,
            _ => throw new NotSupportedException($"'{name}' is {cpu.dtype}; the ONNX export writes float32 and int64 tensors only"),
        };
        var tensor = new TensorProto { Name = name, DataType = (int)type, RawData = ByteString.CopyFrom(cpu.bytes) };
        tensor.Dims.AddRange(cpu.shape);
        graph.Initializer.Add(tensor);
        return name;
    }

    /// <summary>An int64 vector such as a Reshape target, one initializer per distinct value however often it is used.</summary>
    public string Shape(params long[] dims)
    {
        string shapeName = $"shape[{string.Join(",", dims)}]";
        if (shapes.Add(shapeName))
        {
            using var values = torch.tensor(dims);
            Initializer(shapeName, values);
        }
        return shapeName;
    }

    /// <summary>Adds a node named <paramref name="node"/>; returns its output, named <paramref name="output"/> or after the node.</summary>
    public string Node(string opType, string node, string[] inputs, AttributeProto[]? attributes = null, string? output = null)
    {
        var proto = new NodeProto { OpType = opType, Name = node };
        proto.Input.AddRange(inputs);
        proto.Output.Add(output ?? node);
        if (attributes is not null) proto.Attribute.AddRange(attributes);
        graph.Node.Add(proto);
        return output ?? node;
    }

    public void Input(string value, params TensorShapeProto.Types.Dimension[] dims) => graph.Input.Add(FloatTensor(value, dims));

    public void Output(string value, params TensorShapeProto.Types.Dimension[] dims) => graph.Output.Add(FloatTensor(value, dims));

    public static TensorShapeProto.Types.Dimension Dim(long size) => new() { DimValue = size };

    /// <summary>A size fixed only when the model runs, e.g. "batch".</summary>
    public static TensorShapeProto.Types.Dimension Dim(string symbol) => new() { DimParam = symbol };

    public static AttributeProto Int(string name, long value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };

    public static AttributeProto Ints(string name, params long[] values)
    {
        var attribute = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        attribute.Ints.AddRange(values);
        return attribute;
    }

    static ValueInfoProto FloatTensor(string value, TensorShapeProto.Types.Dimension[] dims)
    {
        var shape = new TensorShapeProto();
        shape.Dim.AddRange(dims);
        return new ValueInfoProto
        {
            Name = value,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float, Shape = shape } },
        };
    }
}
