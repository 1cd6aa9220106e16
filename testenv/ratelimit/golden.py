# Golden bytes for filter/src/rls.rs unit tests, from the Python protobuf runtime (independent of prost):
# the rate-limit messages built from a descriptor with the real field numbers. Run: .venv/bin/python testenv/ratelimit/golden.py
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
fdp = descriptor_pb2.FileDescriptorProto(name="rls_min.proto", package="envoy.service.ratelimit.v3", syntax="proto3")
T = descriptor_pb2.FieldDescriptorProto
def msg(name, fields):
    m = fdp.message_type.add(name=name)
    for (fname, num, typ, label, tname) in fields:
        f = m.field.add(name=fname, number=num, type=typ, label=label)
        if tname: f.type_name = tname
OPT, REP = T.LABEL_OPTIONAL, T.LABEL_REPEATED
msg("Entry", [("key",1,T.TYPE_STRING,OPT,None),("value",2,T.TYPE_STRING,OPT,None)])
msg("Override", [("requests_per_unit",1,T.TYPE_UINT32,OPT,None),("unit",2,T.TYPE_INT32,OPT,None)])
msg("Descriptor", [("entries",1,T.TYPE_MESSAGE,REP,".envoy.service.ratelimit.v3.Entry"),("limit",2,T.TYPE_MESSAGE,OPT,".envoy.service.ratelimit.v3.Override")])
msg("RateLimitRequest", [("domain",1,T.TYPE_STRING,OPT,None),("descriptors",2,T.TYPE_MESSAGE,REP,".envoy.service.ratelimit.v3.Descriptor"),("hits_addend",3,T.TYPE_UINT32,OPT,None)])
msg("Dur", [("seconds",1,T.TYPE_INT64,OPT,None),("nanos",2,T.TYPE_INT32,OPT,None)])
msg("RateLimit", [("name",3,T.TYPE_STRING,OPT,None),("requests_per_unit",1,T.TYPE_UINT32,OPT,None),("unit",2,T.TYPE_INT32,OPT,None)])
msg("DescriptorStatus", [("code",1,T.TYPE_INT32,OPT,None),("current_limit",2,T.TYPE_MESSAGE,OPT,".envoy.service.ratelimit.v3.RateLimit"),("limit_remaining",3,T.TYPE_UINT32,OPT,None),("duration_until_reset",4,T.TYPE_MESSAGE,OPT,".envoy.service.ratelimit.v3.Dur")])
msg("RateLimitResponse", [("overall_code",1,T.TYPE_INT32,OPT,None),("statuses",2,T.TYPE_MESSAGE,REP,".envoy.service.ratelimit.v3.DescriptorStatus")])
pool = descriptor_pool.DescriptorPool(); pool.Add(fdp)
get = lambda n: message_factory.GetMessageClass(pool.FindMessageTypeByName("envoy.service.ratelimit.v3."+n))
Req, Resp = get("RateLimitRequest"), get("RateLimitResponse")
r = Req(domain="tollgate", hits_addend=1)
d = r.descriptors.add(); d.entries.add(key="tenant", value="team-a"); d.entries.add(key="rule", value="0-60"); d.entries.add(key="limit", value="tokens")
d.limit.requests_per_unit = 1000; d.limit.unit = 2
print("req", r.SerializeToString().hex())
s = Resp(overall_code=2); st = s.statuses.add(code=2, limit_remaining=0); st.current_limit.requests_per_unit=1000; st.current_limit.unit=2; st.duration_until_reset.seconds=12
print("resp", s.SerializeToString().hex())
