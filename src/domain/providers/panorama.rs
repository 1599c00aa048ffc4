//! Precision Planting Panorama: one `credential_provider!` block.

credential_provider! {
    /// Precision Planting Panorama credentials: your Cognito app client id, the partner login
    /// and organization code, and the grower's refresh token.
    Panorama {
        name: "Panorama",
        title: "Precision Planting Panorama",
        slug: "panorama-credentials",
        object: "panoramaCredentials",
        operation: "panorama",
        request: PanoramaCredentialsRequest,
        response: PanoramaCredentials,
        fields: {
            /// Your Cognito app client id.
            required plain client_id: String,
            /// The partner login's username.
            required plain username: String,
            /// The partner login's password.
            required secret password: String,
            /// The grower organization's code.
            required plain organization_code: String,
            /// The grower's refresh token.
            required secret refresh_token: String,
            /// Which Panorama environment (`STAGE`: partner.bananorama.com, `PRODUCTION`:
            /// partner.panorama.ag).
            required environment client_environment: ClientEnvironment,
        },
        extras: {
            /// The current access token, once one has been issued.
            access_token: Option<String>,
        },
        // Cognito's endpoint depends on the user pool's region, which Panorama does not
        // publish: configured.
        check: CheckKind::CognitoRefresh(Endpoints::UNPUBLISHED),
        example: {
            "clientId": "your-cognito-client-id",
            "username": "partner-user",
            "password": "partner-password",
            "organizationCode": "grower-org",
            "refreshToken": "grower-refresh-token",
            "clientEnvironment": "PRODUCTION"
        },
    }
}
