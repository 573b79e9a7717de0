"""The widget's HTTP side: file uploads (the websocket carries text only) and the demo page."""

from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.utils.cache import patch_vary_headers
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from channels_inbound.webchat.intake import webchat_upload_receive
from channels_inbound.webchat.origins import origin_is_allowed
from channels_inbound.webchat.selectors import webchat_endpoint_for


# No CSRF token: the widget runs on another website and holds no cookie of ours. The visitor token in
# the form is the authentication, and the Origin must be one the widget's endpoint allows.
@csrf_exempt
@require_POST
def upload(request):
    """A visitor's image or document (multipart: key, visitor, id, body, file), stored on a new message.

    CORS: only an allowed origin gets `Access-Control-Allow-Origin`, so only the widget on the
    tenant's own websites can read the answer. A multipart POST without custom headers needs no
    preflight.
    """
    endpoint = webchat_endpoint_for(request.POST.get("key"))
    if endpoint is None:
        return HttpResponse("No webchat widget has this key.", status=404, content_type="text/plain; charset=utf-8")
    origin = request.headers.get("Origin", "")
    if not origin_is_allowed(endpoint.allowed_origins, origin):
        return HttpResponse("This website may not use this widget.", status=403, content_type="text/plain; charset=utf-8")
    response = webchat_upload_receive(request, endpoint)
    response["Access-Control-Allow-Origin"] = origin
    patch_vary_headers(response, ["Origin"])
    return response


@require_GET
def demo(request):
    """A stand-in for a customer's website that embeds the widget: /webchat/demo/?key=<widget key>."""
    key = request.GET.get("key", "")
    if webchat_endpoint_for(key) is None:
        raise Http404("No active webchat widget has this key.")
    return render(request, "webchat/demo.html", {"widget_key": key})
