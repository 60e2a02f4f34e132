using Grpc.Core;
using Grpc.Core.Interceptors;

namespace CondenseCluster.Coordinator.Control;

/// <summary>Refuses control API calls without the coordinator's bearer token (UNAUTHENTICATED), before they run.</summary>
public sealed class BearerTokenInterceptor(ControlToken token) : Interceptor
{
    public override Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context,
        UnaryServerMethod<TRequest, TResponse> continuation)
    {
        Check(context);
        return continuation(request, context);
    }

    public override Task ServerStreamingServerHandler<TRequest, TResponse>(TRequest request, IServerStreamWriter<TResponse> responseStream,
        ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Check(context);
        return continuation(request, responseStream, context);
    }

    void Check(ServerCallContext context)
    {
        string? authorization = context.RequestHeaders.GetValue("authorization");
        if (!token.Accepts(authorization)) throw new RpcException(new Status(StatusCode.Unauthenticated, ControlToken.Refusal(authorization)));
    }
}
