#!/usr/bin/env python3
"""Differential-test oracle: runs the original bagpipe-bgp's own request
validation (networking_bagpipe 17.0.0 as packaged by Debian) on bodies read
from stdin, one JSON line each: {"op": "attach"|"detach", "body": "<text>"}.
Prints one JSON line per body: {"status": 200|400|500, "prefix": bool,
"message": str}. It stops where the original would look up or create the
VPN instance: only the body's own validity is compared.
"""
import json
import sys

from networking_bagpipe.bagpipe_bgp.common import exceptions as exc
from networking_bagpipe.bagpipe_bgp.common import utils
from networking_bagpipe.bagpipe_bgp.vpn import evpn
from networking_bagpipe.bagpipe_bgp.vpn import ipvpn

CLASSES = {'ipvpn': ipvpn.VRF, 'evpn': evpn.EVI}


def check_type(params):
    # VPNManager._check_instance_type, without the driver lookup
    if 'vpn_type' not in params:
        raise exc.APIException("missing instance_type")
    if params['vpn_type'] not in CLASSES:
        raise exc.APIException("unknown vpn_type: %s" % params['vpn_type'])
    return CLASSES[params['vpn_type']]


def attach(params):
    # VPNManager.plug_vif_to_vpn up to the instance lookup
    cls = check_type(params)
    cls.validate_convert_attach_params(params)
    utils.convert_route_targets(params.get('import_rts'))
    utils.convert_route_targets(params.get('export_rts'))
    readvertise = params.get('readvertise')
    if readvertise:
        {k: utils.convert_route_targets(readvertise[k])
         for k in ['from_rt', 'to_rt']}
    attract_traffic = params.get('attract_traffic')
    if attract_traffic:
        utils.convert_route_targets(attract_traffic['redirect_rts'])


def detach(params):
    cls = check_type(params)
    cls.validate_convert_detach_params(params)


def run(op, text):
    try:
        # WebOb's request.json
        params = json.loads(text.encode('utf-8', 'surrogateescape')
                            .decode('utf-8'))
    except Exception:
        return 400, False, "No local port details received"
    try:
        if not isinstance(params, dict):
            raise TypeError("argument after ** must be a mapping")
        (attach if op == 'attach' else detach)(params)
    except exc.APIException as e:
        return 400, True, str(e)
    except Exception as e:
        return 500, False, repr(e)
    return 200, False, ""


for line in sys.stdin:
    req = json.loads(line)
    status, prefix, message = run(req['op'], req['body'])
    print(json.dumps({"status": status, "prefix": prefix,
                      "message": message}), flush=True)
